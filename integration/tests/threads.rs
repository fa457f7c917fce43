//! `rprof-agent threads`: a program whose named threads sit in known places must come out with
//! its names, states, syscalls and stacks through the function each waits in — in text, JSON and
//! pprof — and the target must never be left stopped.

use std::time::Duration;

use rprof_integration::{
    assert_nothing_stopped, assert_success, build_c, exclusive_cpu, label, read_profile, run_agent,
    string, Stacks, Target,
};

const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

/// (thread name, expected state, expected syscall, function the program parks in, libc function it waits in)
const PARKED: &[(&str, &str, Option<&str>, &str, &str)] = &[
    ("spinner", "running", None, "spin_forever", "spin_forever"),
    (
        "mutex-wait",
        "sleeping",
        Some("futex"),
        "lock_mutex",
        "pthread_mutex_lock",
    ),
    (
        "cond-wait",
        "sleeping",
        Some("futex"),
        "wait_for_cond",
        "pthread_cond_wait",
    ),
    (
        "sleeper",
        "sleeping",
        Some("clock_nanosleep"),
        "take_a_nap",
        "nanosleep",
    ),
    (
        "pipe-reader",
        "sleeping",
        Some("read"),
        "read_from_pipe",
        "read",
    ),
];

fn parked_threads() -> Target {
    Target::start(&build_c(
        "parked_threads",
        &["-O2", "-fomit-frame-pointer", "-g"],
    ))
}

fn threads(pid: u32, extra: &[&str]) -> String {
    let mut args = vec!["threads".to_string(), "--pid".into(), pid.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let finished = run_agent(&args, AGENT_TIMEOUT);
    assert_success(&finished, "rprof-agent threads");
    finished.stdout
}

fn frames_in_block<'a>(text: &'a str, name: &str) -> (&'a str, Vec<&'a str>) {
    let header_start = format!("\"{name}\" [");
    let block = text
        .split("\n\n")
        .find(|b| {
            b.lines()
                .next()
                .is_some_and(|h| h.starts_with("thread ") && h.contains(&header_start))
        })
        .unwrap_or_else(|| panic!("no block for thread {name:?} in:\n{text}"));
    let mut lines = block.lines();
    let header = lines.next().unwrap_or_default();
    let frames = lines
        .filter(|l| !l.starts_with('\t') && !l.starts_with('#'))
        .collect();
    (header, frames)
}

#[test]
fn text_dump_names_states_and_stacks() {
    let _cpu = exclusive_cpu();
    let target = parked_threads();
    let text = threads(target.pid(), &[]);
    let summary = text.lines().next().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("PID {}: 6 threads", target.pid())),
        "summary: {summary}"
    );
    for (name, state, syscall, parked_in, waits_in) in PARKED {
        let (header, frames) = frames_in_block(&text, name);
        assert!(
            header.contains(&format!("[{state},")),
            "{name}: header {header:?}"
        );
        assert!(
            frames.iter().any(|f| f.starts_with(parked_in)),
            "{name}: no {parked_in} in {frames:?}"
        );
        assert!(
            frames.iter().any(|f| f.contains(waits_in)),
            "{name}: no {waits_in} in {frames:?}"
        );
        assert!(
            frames
                .last()
                .is_some_and(|f| f.starts_with("clone3") || f.starts_with("start_thread")),
            "{name}: stack does not reach the thread root: {frames:?}"
        );
        if let Some(syscall) = syscall {
            assert!(
                text.contains(&format!("syscall: {syscall} ")),
                "{name}: syscall {syscall} missing"
            );
        }
    }
    assert_nothing_stopped(target.pid());
}

#[test]
fn json_dump_has_every_field() {
    let _cpu = exclusive_cpu();
    let target = parked_threads();
    let json: serde_json::Value =
        serde_json::from_str(&threads(target.pid(), &["--format", "json"])).expect("valid JSON");
    assert_eq!(json["pid"], target.pid());
    assert!(
        json["pause_us"].as_u64().is_some_and(|us| us > 0),
        "pause_us: {}",
        json["pause_us"]
    );
    let threads = json["threads"].as_array().expect("threads array");
    assert_eq!(threads.len(), 6);
    for (name, state, syscall, parked_in, waits_in) in PARKED {
        let thread = threads
            .iter()
            .find(|t| t["name"] == *name)
            .unwrap_or_else(|| panic!("no thread {name}"));
        assert_eq!(thread["state"], *state, "{name}");
        assert!(thread["tid"].as_u64().is_some());
        if let Some(syscall) = syscall {
            assert_eq!(thread["syscall"]["name"], *syscall, "{name}");
            assert!(
                thread["wchan"].is_string(),
                "{name}: wchan {}",
                thread["wchan"]
            );
        }
        let functions: Vec<&str> = thread["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter_map(|f| f["function"].as_str())
            .collect();
        assert!(functions.contains(parked_in), "{name}: {functions:?}");
        assert!(
            functions.iter().any(|f| f.contains(waits_in)),
            "{name}: {functions:?}"
        );
        let with_lines = thread["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter(|f| f["line"].is_u64())
            .count();
        assert!(with_lines > 0, "{name}: no frame has a line number");
    }
    assert_nothing_stopped(target.pid());
}

#[test]
fn pprof_dump_aggregates_threads_by_stack() {
    let _cpu = exclusive_cpu();
    let target = parked_threads();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("threads.pb.gz");
    let out_arg = out.to_str().expect("utf-8 path");
    threads(target.pid(), &["--format", "pprof", "-o", out_arg]);
    let profile = read_profile(&out);
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (string(&profile, t.r#type), string(&profile, t.unit)))
        .collect();
    assert_eq!(types, [("threads", "count")]);
    assert_eq!(profile.period, 1);
    let total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(total, 6, "one count per thread");
    let stacks = Stacks::new(&profile);
    for (name, state, _, parked_in, _) in PARKED {
        let sample = profile
            .sample
            .iter()
            .find(|s| label(&profile, s, "thread") == Some(*name))
            .unwrap_or_else(|| panic!("no sample labelled thread={name}"));
        assert_eq!(label(&profile, sample, "state"), Some(*state), "{name}");
        let frames = stacks.frames(sample);
        assert!(frames.contains(parked_in), "{name}: {frames:?}");
    }
    let traces = rprof_integration::go_tool_pprof(&["-traces".as_ref(), out.as_os_str()]);
    assert_success(&traces, "go tool pprof -traces");
    assert!(traces.stdout.contains("wait_for_cond"), "{}", traces.stdout);
    assert_nothing_stopped(target.pid());
}

#[test]
fn nonblocking_dump_never_stops_the_target() {
    let _cpu = exclusive_cpu();
    let target = parked_threads();
    let json: serde_json::Value = serde_json::from_str(&threads(
        target.pid(),
        &["--format", "json", "--nonblocking"],
    ))
    .expect("valid JSON");
    assert_eq!(json["pause_us"], 0);
    let threads = json["threads"].as_array().expect("threads");
    let by_name = |name: &str| {
        threads
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(
        by_name("spinner")["has_stack"],
        false,
        "a running thread has no stack without a stop"
    );
    for (name, parked_in) in [("sleeper", "take_a_nap"), ("pipe-reader", "read_from_pipe")] {
        let functions: Vec<&str> = by_name(name)["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter_map(|f| f["function"].as_str())
            .collect();
        assert!(functions.contains(&parked_in), "{name}: {functions:?}");
    }
}

#[test]
fn killing_the_agent_mid_snapshot_leaves_nothing_stopped() {
    let _cpu = exclusive_cpu();
    let target = Target::spawn(&build_c("many_threads", &["-O2", "-g"]), &["200"]);
    for round in 0..12u64 {
        let agent = rprof_integration::Running::spawn(
            rprof_integration::agent_command(&[
                "threads",
                "--pid",
                &target.pid().to_string(),
                "--format",
                "json",
            ]),
            "rprof-agent threads",
        );
        // Spread the kills over the whole snapshot: before, during and after the pause.
        std::thread::sleep(Duration::from_micros(1500 * round * round));
        agent.signal(libc::SIGKILL);
        let _ = agent.finish(AGENT_TIMEOUT);
        std::thread::sleep(Duration::from_millis(20));
        assert_nothing_stopped(target.pid());
    }
}

#[test]
fn bad_pid_is_one_clear_line() {
    let finished = run_agent(&["threads", "--pid", "999999999"], AGENT_TIMEOUT);
    assert!(!finished.status.success());
    assert!(
        finished.stderr.to_lowercase().contains("no such process"),
        "{}",
        finished.stderr
    );
    assert_eq!(
        finished.stderr.trim().lines().count(),
        1,
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("panicked"));
}
