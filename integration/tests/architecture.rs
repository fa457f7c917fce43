//! The agent unwinds 64-bit x86-64 programs only: a 32-bit program is refused by every verb in
//! one line, before anything is attached, and is left running as it was.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use rprof_integration::{
    agent_bin, agent_command, assert_nothing_stopped, assert_one_line_error, programs, run_agent,
    Running, Target,
};

const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_32_bit_target_is_refused_by_every_verb_in_one_line() {
    agent_bin();
    let target = Target::start(&programs::i386_ready());
    let pid = target.pid().to_string();
    let verbs: [&[&str]; 4] = [
        &["record", "--pid", &pid, "--seconds", "1"],
        &["threads", "--pid", &pid],
        &["serve", "--pid", &pid, "--listen", "127.0.0.1:0"],
        &[
            "record",
            "--profile",
            "threadcreate",
            "--pid",
            &pid,
            "--seconds",
            "1",
        ],
    ];
    for args in verbs {
        let finished = run_agent(args, AGENT_TIMEOUT);
        assert_one_line_error(&finished, &args.join(" "), &["32-bit", "x86-64"]);
        assert_nothing_stopped(target.pid());
    }
}

#[test]
fn a_32_bit_command_is_refused_before_it_runs() {
    let program = programs::i386_ready();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let args = [
        "record".into(),
        "--seconds".into(),
        "1".into(),
        "-o".into(),
        dir.path().join("cpu.pb.gz").into_os_string(),
        "--".into(),
        program.into_os_string(),
    ];
    let finished = run_agent(&args, AGENT_TIMEOUT);
    assert_one_line_error(&finished, "record -- i386_ready", &["32-bit", "x86-64"]);
    assert!(
        finished.elapsed < Duration::from_secs(1),
        "it ran the program"
    );
}

#[test]
fn a_32_bit_program_found_by_name_gets_503_saying_why() {
    agent_bin();
    let target = Target::start(&programs::i386_ready());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = Running::spawn(
        agent_command(&["serve", "--process", "i386_ready", "--listen", &listen]),
        "rprof-agent serve",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(err) if Instant::now() > deadline => panic!("serve does not listen: {err}"),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    };
    stream
        .write_all(b"GET /debug/pprof/profile?seconds=1 HTTP/1.0\r\n\r\n")
        .expect("send a request");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    assert!(response.starts_with("HTTP/1.0 503"), "{response}");
    assert!(
        response.contains("32-bit") && response.contains("x86-64"),
        "{response}"
    );
    assert_nothing_stopped(target.pid());
    server.signal(libc::SIGTERM);
    let finished = server.finish(Duration::from_secs(30));
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
}
