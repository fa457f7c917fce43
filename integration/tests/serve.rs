//! `rprof-agent serve`: real programs profiled over HTTP by real clients — `go tool pprof`
//! fetching profiles from the URL as it fetches them from Go services, and plain HTTP requests
//! for everything Go's net/http/pprof contract promises (content types, headers, status codes,
//! error bodies). Plus the sidecar's deployment manifest.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use object::{Object, ObjectSegment, ObjectSymbol};
use rprof_integration::http::{http, Response, TEXT_PLAIN};
use rprof_integration::{
    agent_bin, agent_command, build_c, decode_profile, exclusive, is_root, pprof_output,
    total_samples, workspace_root, Finished, Running, Stacks, Target,
};
use rprof_proto::pb::Profile;

/// Optimized, with DWARF, without frame pointers, as the other tests build their programs.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];
/// How long the server may take to answer its first request.
const STARTUP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The server under test.

/// `rprof-agent serve ... --listen 127.0.0.1:PORT`, killed when dropped.
struct Server {
    agent: Running,
    port: u16,
}

impl Server {
    /// Starts the server with `args` and waits until it answers.
    fn start(args: &[&str]) -> Server {
        Server::start_with(args, |all| agent_command(all))
    }

    /// [`Server::start`] as user `nobody`, without any capability.
    fn start_unprivileged(args: &[&str]) -> Server {
        assert!(
            is_root(),
            "this test must run as root, to start the agent as another user"
        );
        Server::start_with(args, |all| {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(agent_bin())
                .args(all);
            cmd
        })
    }

    fn start_with(args: &[&str], command: impl FnOnce(&[&str]) -> Command) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["serve", "--listen", &listen];
        all.extend_from_slice(args);
        let server = Server {
            agent: Running::spawn(command(&all), "rprof-agent serve"),
            port,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rprof-agent serve did not listen on port {} within {STARTUP:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Response {
        http(self.port, "GET", path, &[], b"")
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http(self.port, "GET", path, headers, b"")
    }

    fn post(&self, path: &str, body: &[u8]) -> Response {
        http(self.port, "POST", path, &[], body)
    }

    /// Polls `path` until `done` holds for its response (the target follower runs every 500 ms).
    fn poll(&self, path: &str, done: impl Fn(&Response) -> bool) -> Response {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = self.get(path);
            if done(&response) {
                return response;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never answered as expected; last: {} {}",
                response.status,
                response.text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the agent's exit and everything it printed.
    fn stop(self) -> Finished {
        self.agent.signal(libc::SIGTERM);
        self.agent.finish(Duration::from_secs(30))
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address").port()
}

fn leaf_ratio() -> PathBuf {
    build_c("leaf_ratio", C_FLAGS)
}

fn parked_threads() -> Target {
    Target::start(&build_c("parked_threads", C_FLAGS))
}

/// `go tool pprof ARGS URL`, which must succeed.
fn pprof(args: &[&str], url: &str) -> String {
    pprof_output(args, OsStr::new(url))
}

/// The samples per leaf function in `go tool pprof -sample_index=samples -traces` output: each
/// trace's first line that starts with a count names its leaf.
fn leaf_counts(traces: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for trace in traces.split("-----------+") {
        let leaf = trace.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            let count = words.next()?.parse::<u64>().ok()?;
            Some((count, words.next()?.to_string()))
        });
        if let Some((count, function)) = leaf {
            *counts.entry(function).or_default() += count;
        }
    }
    counts
}

fn comments(profile: &Profile) -> Vec<&str> {
    profile
        .comment
        .iter()
        .map(|&index| {
            usize::try_from(index)
                .ok()
                .and_then(|i| profile.string_table.get(i))
                .map_or("", String::as_str)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Profiles through `go tool pprof`.

#[test]
fn go_tool_pprof_fetches_a_cpu_profile_with_the_right_ratio() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid, "-F", "250"]);

    let raw = pprof(&["-raw"], &server.url("/debug/pprof/profile?seconds=2"));
    assert!(raw.contains("PeriodType: cpu nanoseconds"), "{raw}");
    assert!(raw.contains("leaf_a") && raw.contains("leaf_b"), "{raw}");

    let traces = pprof(
        &["-sample_index=samples", "-traces"],
        &server.url("/debug/pprof/profile?seconds=2"),
    );
    let counts = leaf_counts(&traces);
    let (a, b) = (counts.get("leaf_a"), counts.get("leaf_b"));
    let (Some(&a), Some(&b)) = (a, b) else {
        panic!("no leaf_a or leaf_b leaves: {counts:?}\n{traces}");
    };
    let ratio = a as f64 / (a + b) as f64;
    assert!(
        (ratio - 0.75).abs() <= 0.08,
        "leaf_a has {a} samples, leaf_b {b}: {:.1} % instead of 75 ± 8 %",
        ratio * 100.0
    );

    let direct = server.get("/debug/pprof/profile?seconds=1");
    direct.expect_status(200);
    assert_eq!(
        direct.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        direct.header("content-disposition"),
        Some("attachment; filename=\"profile\"")
    );
    assert_eq!(direct.header("x-content-type-options"), Some("nosniff"));
    let profile = decode_profile(&direct.body);
    assert!(total_samples(&profile) > 0, "an empty profile");
}

#[test]
fn go_tool_pprof_reads_the_thread_snapshot_as_a_goroutine_profile() {
    let _cpu = exclusive();
    let target = parked_threads();
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let goroutine = pprof(&["-traces"], &server.url("/debug/pprof/goroutine"));
    assert!(goroutine.contains("Type: goroutine"), "{goroutine}");
    for parked_in in [
        "spin_forever",
        "lock_mutex",
        "wait_for_cond",
        "take_a_nap",
        "read_from_pipe",
    ] {
        assert!(
            goroutine.contains(parked_in),
            "no {parked_in} in:\n{goroutine}"
        );
    }
    let threads = pprof(&["-traces"], &server.url("/debug/pprof/threads?debug=0"));
    assert!(threads.contains("Type: threads"), "{threads}");
    assert!(threads.contains("take_a_nap"), "{threads}");

    let response = server.get("/debug/pprof/goroutine");
    response.expect_status(200);
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=\"goroutine\"")
    );
}

#[test]
fn go_tool_pprof_fetches_a_threadcreate_window() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let counter = dir.path().join("created");
    let churn = build_c("thread_churn", C_FLAGS);
    let target = Target::spawn(&churn, &[&counter]);
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let traces = pprof(
        &["-traces"],
        &server.url("/debug/pprof/threadcreate?seconds=2"),
    );
    assert!(traces.contains("Type: threadcreate"), "{traces}");
    for creator in ["spawn_from_a", "spawn_from_b"] {
        assert!(traces.contains(creator), "no {creator} in:\n{traces}");
    }
    let response = server.get("/debug/pprof/threadcreate?seconds=1");
    response.expect_status(200);
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=\"threadcreate-delta\"")
    );
}

#[test]
fn go_tool_pprof_fetches_block_mutex_wall_and_fgprof_windows() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let totals = dir.path().join("totals");
    let target = Target::spawn(&build_c("lock_waits", C_FLAGS), &[&totals]);
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let block = pprof(
        &["-sample_index=delay", "-traces"],
        &server.url("/debug/pprof/block?seconds=2"),
    );
    assert!(block.contains("Type: delay"), "{block}");
    for site in ["wait_at_a", "wait_at_b"] {
        assert!(block.contains(site), "no {site} in:\n{block}");
    }
    assert!(block.contains("wait:  lock"), "{block}");
    // The delay splits between the call sites as the program measured it.
    let waited = || -> [f64; 2] {
        let text = std::fs::read_to_string(&totals).expect("read the program's totals");
        let numbers: Vec<f64> = text
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect();
        [numbers[0], numbers[1]]
    };
    let before = waited();
    let response = server.get("/debug/pprof/block?seconds=3");
    let after = waited();
    response.expect_status(200);
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=\"block-delta\"")
    );
    let profile = decode_profile(&response.body);
    let stacks = Stacks::new(&profile);
    let delay_at = |site: &str| -> i64 {
        profile
            .sample
            .iter()
            .filter(|sample| stacks.frames(sample).contains(&site))
            .map(|sample| sample.value[1])
            .sum()
    };
    let (a, b) = (delay_at("wait_at_a") as f64, delay_at("wait_at_b") as f64);
    let truth = (after[0] - before[0]) / (after[0] - before[0] + after[1] - before[1]);
    assert!(
        (a / (a + b) - truth).abs() <= 0.05,
        "wait_at_a holds {:.1} % of the delay served, the program measured {:.1} %",
        100.0 * a / (a + b),
        100.0 * truth
    );

    let off_cpu = pprof(
        &["-tagfocus=state=off-cpu", "-traces"],
        &server.url("/debug/pprof/wall?seconds=2"),
    );
    assert!(off_cpu.contains("Type: wall"), "{off_cpu}");
    assert!(off_cpu.contains("wait_at_a"), "{off_cpu}");
    assert!(!off_cpu.contains("state:  on-cpu"), "{off_cpu}");
    let mutex = pprof(
        &["-sample_index=delay", "-traces"],
        &server.url("/debug/pprof/mutex?seconds=2"),
    );
    assert!(mutex.contains("Type: delay"), "{mutex}");
    assert!(mutex.contains("pthread_mutex_unlock"), "{mutex}");
    let fgprof = pprof(&["-raw"], &server.url("/debug/fgprof?seconds=1"));
    let growth = pprof(&["-raw"], &server.url("/debug/pprof/growth?seconds=1"));
    assert!(growth.contains("PeriodType: faults count"), "{growth}");
    assert!(fgprof.contains("PeriodType: wall nanoseconds"), "{fgprof}");
    let index = server.get("/debug/pprof/").text();
    for name in ["block", "wall"] {
        assert!(
            index.contains(&format!("<a href='{name}?debug=1'>")),
            "{index}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Text endpoints, over plain HTTP.

#[test]
fn index_and_text_dumps_read_like_gos() {
    let _cpu = exclusive();
    let target = parked_threads();
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let index = server.get("/debug/pprof/");
    index.expect_status(200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = index.text();
    for name in ["cmdline", "goroutine", "profile", "threadcreate", "threads"] {
        assert!(page.contains(&format!("href='{name}?debug=1'")), "{page}");
    }
    assert!(
        page.contains("<tr><td>6</td><td><a href='goroutine?debug=1'>"),
        "{page}"
    );
    assert!(page.contains(&format!("PID {pid}")), "{page}");
    server.get("/debug/pprof").expect_status(301);

    let counts = server.get("/debug/pprof/goroutine?debug=1");
    counts.expect_status(200);
    assert_eq!(counts.header("content-type"), Some(TEXT_PLAIN));
    assert_eq!(counts.header("x-content-type-options"), Some("nosniff"));
    let text = counts.text();
    assert!(text.starts_with("goroutine profile: total 6\n"), "{text}");
    // Five parked threads, each a record: "1 @ 0x...", then "#\t0xPC\tfunction..." lines.
    let records: Vec<&str> = text.split("\n\n").filter(|r| r.contains(" @ 0x")).collect();
    assert!(records.len() >= 5, "{text}");
    for parked_in in ["spin_forever", "take_a_nap", "read_from_pipe"] {
        let frame = format!("\t{parked_in}");
        assert!(
            records.iter().any(|r| r
                .lines()
                .any(|l| l.starts_with("#\t0x") && l.contains(&frame))),
            "no frame of {parked_in} in:\n{text}"
        );
    }

    let dump = server.get("/debug/pprof/goroutine?debug=2");
    dump.expect_status(200);
    let text = dump.text();
    assert!(text.contains("\"sleeper\" [sleeping"), "{text}");
    assert!(text.contains("take_a_nap"), "{text}");
}

/// A server without ptrace rights on its target (another user's process, no capability) still
/// answers the goroutine dumps: every thread with its name and state, and one line saying why
/// stacks are missing, never an error.
#[test]
fn goroutine_dumps_without_ptrace_rights_say_why_stacks_are_missing() {
    let _cpu = exclusive();
    let target = parked_threads();
    let pid = target.pid().to_string();
    let server = Server::start_unprivileged(&["--pid", &pid]);
    let why = "stacks unavailable: no ptrace access";

    let counts = server.get("/debug/pprof/goroutine?debug=1");
    counts.expect_status(200);
    let text = counts.text();
    assert!(text.starts_with("goroutine profile: total 6\n"), "{text}");
    assert_eq!(text.matches(why).count(), 1, "{text}");

    let dump = server.get("/debug/pprof/goroutine?debug=2");
    dump.expect_status(200);
    let text = dump.text();
    assert_eq!(text.matches(why).count(), 1, "{text}");
    for header in [
        "\"spinner\" [running",
        "\"sleeper\" [sleeping",
        "\"pipe-reader\" [sleeping",
    ] {
        assert!(text.contains(header), "no {header} in:\n{text}");
    }

    let profile = server.get("/debug/pprof/goroutine");
    profile.expect_status(200);
    let profile = decode_profile(&profile.body);
    assert_eq!(total_samples(&profile), 6);
}

#[test]
fn go_tool_pprof_reads_the_text_form_and_names_it_through_symbol() {
    let _cpu = exclusive();
    let target = parked_threads();
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    // debug=1 text has addresses only: pprof parses it, then POSTs them to /debug/pprof/symbol.
    let traces = pprof(&["-traces"], &server.url("/debug/pprof/goroutine?debug=1"));
    for parked_in in ["spin_forever", "take_a_nap", "read_from_pipe"] {
        assert!(traces.contains(parked_in), "no {parked_in} in:\n{traces}");
    }
    let log = server.stop().stderr;
    assert!(
        log.contains("\"POST /debug/pprof/symbol\" 200"),
        "pprof did not ask /symbol:\n{log}"
    );
}

#[test]
fn cmdline_and_symbol_answer_as_gos() {
    let _cpu = exclusive();
    let program = leaf_ratio();
    let target = Target::spawn(&program, &["3600"]);
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let cmdline = server.get("/debug/pprof/cmdline");
    cmdline.expect_status(200);
    assert_eq!(cmdline.header("content-type"), Some(TEXT_PLAIN));
    let expected = format!("{}\x003600", program.display());
    assert_eq!(
        cmdline.text(),
        expected,
        "arguments are NUL-separated, no trailing NUL"
    );

    let count = server.get("/debug/pprof/symbol");
    count.expect_status(200);
    assert_eq!(count.text(), "num_symbols: 1\n");

    let leaf_a = runtime_address(target.pid(), &program, "leaf_a") + 4;
    let leaf_b = runtime_address(target.pid(), &program, "leaf_b");
    let body = format!("{leaf_a:#x}+{leaf_b:#x}+0x10");
    let named = server.post("/debug/pprof/symbol", body.as_bytes());
    named.expect_status(200);
    assert_eq!(named.header("content-type"), Some(TEXT_PLAIN));
    assert_eq!(
        named.text(),
        format!("num_symbols: 1\n{leaf_a:#x} leaf_a\n{leaf_b:#x} leaf_b\n"),
        "an address in no module (0x10) gets no line, as in Go"
    );
}

/// Where `symbol` of `binary` is in process `pid`: its address in the file, plus the load bias
/// of the mapping that holds the file's first segment.
fn runtime_address(pid: u32, binary: &Path, symbol: &str) -> u64 {
    let data = std::fs::read(binary).expect("read the program");
    let elf = object::File::parse(&*data).expect("parse the program");
    let value = elf
        .symbols()
        .find(|s| s.name() == Ok(symbol))
        .unwrap_or_else(|| panic!("{symbol} is not in {}", binary.display()))
        .address();
    let first_vaddr = elf
        .segments()
        .map(|segment| segment.address())
        .min()
        .expect("a loadable segment");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read the maps");
    let path = std::fs::canonicalize(binary).expect("canonical path");
    let start = maps
        .lines()
        .find(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 6 && fields[2] == "00000000" && Path::new(fields[5]) == path
        })
        .and_then(|line| line.split('-').next())
        .and_then(|start| u64::from_str_radix(start, 16).ok())
        .unwrap_or_else(|| panic!("{} is not mapped in:\n{maps}", path.display()));
    start - (first_vaddr & !0xfff) + value
}

// ---------------------------------------------------------------------------------------------
// Go's error contract.

#[test]
fn errors_are_gos() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid, "--max-seconds", "5"]);

    for unknown in ["trace", "nonsense", "heap2"] {
        server
            .get(&format!("/debug/pprof/{unknown}"))
            .expect_go_error(404, "Unknown profile");
    }
    let invalid = r#"invalid value for "seconds" - must be a positive integer"#;
    for seconds in ["abc", "0", "-1", "1.5"] {
        server
            .get(&format!("/debug/pprof/profile?seconds={seconds}"))
            .expect_go_error(400, invalid);
        server
            .get(&format!("/debug/pprof/threadcreate?seconds={seconds}"))
            .expect_go_error(400, invalid);
    }
    let over = server.get("/debug/pprof/profile?seconds=6");
    over.expect_status(400);
    assert_eq!(over.header("x-go-pprof"), Some("1"));
    assert!(over.text().contains("--max-seconds"), "{}", over.text());
    server
        .get("/debug/pprof/threadcreate?seconds=1&debug=1")
        .expect_go_error(400, "seconds and debug params are incompatible");
    server
        .get("/debug/pprof/goroutine?seconds=1")
        .expect_go_error(
            400,
            r#""seconds" parameter is not supported for this profile type"#,
        );
    server.get("/elsewhere").expect_status(404);
}

#[test]
fn a_second_cpu_profile_while_one_runs_is_refused_like_go() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let port = server.port;
    let first =
        thread::spawn(move || http(port, "GET", "/debug/pprof/profile?seconds=3", &[], b""));
    thread::sleep(Duration::from_secs(1));
    server
        .get("/debug/pprof/profile?seconds=1")
        .expect_go_error(
            500,
            "Could not enable CPU profiling: cpu profiling already in use",
        );
    // A snapshot is another kind of profile: it is not held up.
    server.get("/debug/pprof/goroutine").expect_status(200);
    let first = first.join().expect("the first request");
    first.expect_status(200);
    assert!(total_samples(&decode_profile(&first.body)) > 0);
    // Once the first is answered, the next one runs.
    server
        .get("/debug/pprof/profile?seconds=1")
        .expect_status(200);
}

#[test]
fn a_client_that_leaves_ends_its_recording() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let mut leaving = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    leaving
        .write_all(b"GET /debug/pprof/profile?seconds=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send the request");
    thread::sleep(Duration::from_secs(1));
    drop(leaving);
    // Its recording stops with it: the next CPU profile can start well before the minute is up.
    let started = Instant::now();
    let next = server.poll("/debug/pprof/profile?seconds=1", |r| r.status == 200);
    assert!(total_samples(&decode_profile(&next.body)) > 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the abandoned recording went on for {:?}",
        started.elapsed()
    );
    let log = server.stop().stderr;
    assert!(
        log.contains("\"GET /debug/pprof/profile?seconds=60\" 499"),
        "the abandoned request is not logged:\n{log}"
    );
}

#[test]
fn a_bearer_token_is_required_when_configured() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let dir = tempfile::tempdir().expect("create a directory");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("write the token");
    let token_arg = token_file.to_str().expect("UTF-8 path");
    let server = Server::start(&["--pid", &pid, "--token-file", token_arg]);

    for refused in [
        server.get("/debug/pprof/"),
        server.get("/debug/pprof/cmdline"),
        server.get_with("/debug/pprof/cmdline", &[("Authorization", "Bearer wrong")]),
        server.get_with("/debug/pprof/cmdline", &[("Authorization", "s3cret-token")]),
    ] {
        refused.expect_status(401);
        assert_eq!(refused.header("x-go-pprof"), Some("1"));
        assert!(refused.header("www-authenticate").is_some());
    }
    let admitted = [("Authorization", "Bearer s3cret-token")];
    server
        .get_with("/debug/pprof/", &admitted)
        .expect_status(200);
    server
        .get_with("/debug/pprof/cmdline", &admitted)
        .expect_status(200);
}

/// The server's header-read and body timeouts (agent/src/server/listener.rs).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `count` connections that each send half a request header and wait, as a slow or hostile
/// client does.
fn half_open_connections(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|err| panic!("connect to 127.0.0.1:{port}: {err}"));
            stream
                .write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag")
                .expect("send half a header");
            stream
        })
        .collect()
}

/// Waits until the server closes `stream` (EOF or reset), at most until `deadline`, and returns
/// what it sent before.
fn assert_closed_by(mut stream: TcpStream, deadline: Instant) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "a slow or idle connection is still open");
        stream
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(err) => panic!("a slow or idle connection is still open after the deadline: {err}"),
        }
    }
}

#[test]
fn slow_clients_neither_keep_profiles_out_nor_stay_past_their_timeouts() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let opened = Instant::now();
    let held = half_open_connections(server.port, 200);
    // And one that sends a whole header, then a tenth of the body it announced.
    let mut slow_body = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    slow_body
        .write_all(
            b"POST /debug/pprof/symbol HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0x10",
        )
        .expect("send a header and part of a body");
    // And one that asks once, is answered, and then keeps its connection idle.
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    idle.write_all(b"GET /debug/pprof/cmdline HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send a keep-alive request");
    // While they are held, a profile and the index are served.
    let raw = pprof(&["-raw"], &server.url("/debug/pprof/profile?seconds=2"));
    assert!(raw.contains("leaf_a") && raw.contains("leaf_b"), "{raw}");
    server.get("/debug/pprof/").expect_status(200);
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "the requests took {:?}: longer than the slow clients may hold their connections",
        opened.elapsed()
    );
    // Then each is closed by the server at its header timeout (with slack for a busy machine),
    // not before (the first closes no sooner than a second before it).
    let deadline = opened + HEADER_TIMEOUT + Duration::from_secs(5);
    let mut held = held.into_iter();
    assert_closed_by(held.next().expect("200 connections"), deadline);
    let first_closed = opened.elapsed();
    assert!(
        first_closed >= HEADER_TIMEOUT - Duration::from_secs(1),
        "a slow client was dropped after {first_closed:?}, before its header timeout"
    );
    for stream in held.chain([slow_body]) {
        assert_closed_by(stream, deadline);
    }
    let answer = assert_closed_by(idle, deadline);
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

// ---------------------------------------------------------------------------------------------
// Target selection and lifecycle.

#[test]
fn a_named_process_is_followed_across_restarts() {
    let _cpu = exclusive();
    // A name of its own (within comm's 15 characters), so that no other test's process matches.
    let dir = tempfile::tempdir().expect("create a directory");
    let name = format!("rpf{}", std::process::id() % 1_000_000_000);
    let program = dir.path().join(&name);
    std::fs::copy(leaf_ratio(), &program).expect("copy the program");
    let server = Server::start(&["--process", &name]);

    let waiting = server.get("/debug/pprof/cmdline");
    waiting.expect_status(503);
    assert_eq!(waiting.header("x-go-pprof"), Some("1"));
    assert!(
        waiting
            .text()
            .contains(&format!("no process named \"{name}\"")),
        "{}",
        waiting.text()
    );

    let first = Target::spawn(&program, &["3600"]);
    server.poll("/debug/pprof/cmdline", |r| r.status == 200);
    assert!(server
        .get("/debug/pprof/cmdline")
        .text()
        .ends_with("\x003600"));
    drop(first);
    server.poll("/debug/pprof/cmdline", |r| r.status == 503);

    let second = Target::spawn(&program, &["3601"]);
    server.poll("/debug/pprof/cmdline", |r| r.status == 200);
    assert!(server
        .get("/debug/pprof/cmdline")
        .text()
        .ends_with("\x003601"));
    let index = server.get("/debug/pprof/").text();
    assert!(index.contains(&format!("PID {}", second.pid())), "{index}");
    let response = server.get("/debug/pprof/profile?seconds=1");
    response.expect_status(200);
    let profile = decode_profile(&response.body);
    let pid_note = format!("PID {}", second.pid());
    assert!(
        comments(&profile).iter().any(|c| c.contains(&pid_note)),
        "the profile is not of the new process {}: {:?}",
        second.pid(),
        comments(&profile)
    );
    assert!(total_samples(&profile) > 0);
}

#[test]
fn sigterm_cuts_a_cpu_profile_short_and_still_sends_it() {
    let _cpu = exclusive();
    let target = Target::start(&leaf_ratio());
    let pid = target.pid().to_string();
    let server = Server::start(&["--pid", &pid]);

    let port = server.port;
    let started = Instant::now();
    let request =
        thread::spawn(move || http(port, "GET", "/debug/pprof/profile?seconds=60", &[], b""));
    thread::sleep(Duration::from_millis(1500));
    let finished = server.stop();
    let response = request.join().expect("the request");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the profile was not cut short: {:?}",
        started.elapsed()
    );
    response.expect_status(200);
    let profile = decode_profile(&response.body);
    assert!(total_samples(&profile) > 0, "an empty profile");
    assert!(
        profile.duration_nanos < 30_000_000_000,
        "duration {} ns",
        profile.duration_nanos
    );
    assert!(finished.status.success(), "{finished:?}");
    assert!(finished.stderr.contains("SIGTERM"), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("\"GET /debug/pprof/profile?seconds=60\" 200"),
        "no request log line in:\n{}",
        finished.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes manifest.

/// Parses the multi-document YAML file with PyYAML (python3-yaml), as JSON documents.
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; \
             print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("run python3 (apt-get install python3 python3-yaml)");
    assert!(
        output.status.success(),
        "{} is not valid YAML (or python3-yaml is missing):\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("PyYAML's JSON")
}

#[test]
fn the_sidecar_manifest_has_what_the_agent_needs() {
    let path = workspace_root().join("deploy/kubernetes/sidecar.yaml");
    let documents = yaml_documents(&path);
    let kind = |doc: &serde_json::Value| doc["kind"].as_str().unwrap_or_default().to_string();
    let workload = documents
        .iter()
        .find(|d| ["Pod", "Deployment"].contains(&kind(d).as_str()))
        .expect("a Pod or a Deployment");
    let pod = if kind(workload) == "Pod" {
        &workload["spec"]
    } else {
        &workload["spec"]["template"]["spec"]
    };
    assert_eq!(pod["shareProcessNamespace"], true);
    let containers = pod["containers"].as_array().expect("containers");
    assert!(containers.len() >= 2, "an application and the agent");
    let agent = containers
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .unwrap_or_default()
                .contains("rprof-agent")
        })
        .expect("the agent's container");
    let args: Vec<&str> = agent["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let after = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    assert!(after("--process").is_some(), "{args:?}");
    assert_eq!(after("--listen"), Some("0.0.0.0:6060"), "{args:?}");
    assert!(agent["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["containerPort"] == 6060));
    let security = &agent["securityContext"];
    assert_ne!(security["privileged"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(added, ["SYS_PTRACE", "PERFMON"]);

    let service = documents
        .iter()
        .find(|d| kind(d) == "Service")
        .expect("a Service");
    assert!(service["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .any(|p| p["port"] == 6060));
}
