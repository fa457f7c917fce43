//! The agent unwinds 64-bit x86-64 programs only: a 32-bit program is refused by every verb in
//! one line, before anything is attached, and is left running as it was.

use std::time::Duration;

use rprof_integration::{
    agent_bin, assert_nothing_stopped, assert_one_line_error, programs, run_agent, Target,
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
