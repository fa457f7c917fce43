//! `rprof-agent record --profile block|wall`, end to end: real programs that wait on locks,
//! sleep, read pipes and sockets and poll, measuring their own waits; real context-switch
//! sampling; profiles checked against what the programs measured.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rprof_integration::{
    agent_bin, agent_command, assert_go_stacks_rooted, assert_one_line_error, assert_split,
    build_c, build_cpp, build_rust, comment_starting, cpu_time, exclusive, label, programs,
    record_full, record_full_env, require_kernel_sampling_refused, sample_types, string, total,
    Measuring, Running, Stacks, Target, AS_UNPRIVILEGED,
};
use rprof_proto::pb::{Profile, Sample};

/// Optimized, with DWARF, without frame pointers: only unwind tables can unwind it.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

/// Recording window, seconds.
const SECONDS: u32 = 3;

fn window_seconds(profile: &Profile) -> f64 {
    profile.duration_nanos as f64 / 1e9
}

/// How the profile says its waits were timed (the comment that starts "event:").
fn timing_comment(profile: &Profile) -> String {
    profile
        .comment
        .iter()
        .map(|&c| string(profile, c).to_owned())
        .find(|c| c.starts_with("event: context-switches"))
        .unwrap_or_else(|| panic!("no event comment among {:?}", profile.comment))
}

/// Waits timed in the kernel: the sampled waits whose departure (stack) found no end, as the
/// profile's comments count them, must be few against the waits profiled (a wait still open at
/// a read is held until its end comes; a pairing that dropped them lost 12 % of mutex's delay).
fn assert_few_unpaired(profile: &Profile) {
    let unpaired: f64 = (profile.comment.iter())
        .map(|&c| string(profile, c))
        .find_map(|c| {
            let (_, rest) = c.split_once("samples left unpaired (their end lost): ")?;
            rest.split(|ch: char| !ch.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no unpaired count among {:?}", profile.comment));
    let waits = total(profile, 0, |_, _| true);
    assert!(
        unpaired <= 0.02 * waits,
        "{unpaired} sampled waits left unpaired, against {waits} profiled"
    );
}

/// The agent's environment that makes it time waits from a record of every switch, as it
/// does where it cannot load its BPF program.
const TIMED_BY_RECORDS: &[(&str, &str)] = &[("RPROF_WAITS_TIMING", "records")];

#[test]
fn block_attributes_lock_waits_to_the_waiting_call_sites() {
    let profile = lock_waits_in_block(&[]);
    // As root the kernel times the waits: a BPF program that fails to load here is a bug.
    let timing = timing_comment(&profile);
    assert!(timing.contains("timed in the kernel"), "{timing}");
    assert_few_unpaired(&profile);
}

#[test]
fn block_attributes_lock_waits_the_same_where_switch_records_time_them() {
    let profile = lock_waits_in_block(TIMED_BY_RECORDS);
    let timing = timing_comment(&profile);
    assert!(timing.contains("record of every switch"), "{timing}");
}

/// Records `lock_waits` (two call sites that wait on a lock 3:1 in total time) with block,
/// the agent run with `env`, and checks the split, the total and the stacks.
fn lock_waits_in_block(env: &[(&str, &str)]) -> Profile {
    let _cpu = exclusive();
    let program = Measuring::start(&build_c("lock_waits", C_FLAGS));
    let (recording, [rate_a, rate_b]) = program.record_env("block", SECONDS, env);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    assert_eq!(
        sample_types(profile),
        [("contentions", "count"), ("delay", "nanoseconds")]
    );
    let at = |site: &'static str| move |frames: &[&str], _: &Sample| frames.contains(&site);
    let delay_a = total(profile, 1, at("wait_at_a"));
    let delay_b = total(profile, 1, at("wait_at_b"));
    assert_split(
        "wait_at_a's share of the delay",
        [delay_a, delay_b],
        [rate_a, rate_b],
        0.65..=0.85,
    );
    // Delays per second of window against the program's per second of its own clock.
    let profiled_rate = (delay_a + delay_b) / window_seconds(profile);
    let measured_rate = (rate_a + rate_b) * 1.0;
    let error = profiled_rate / measured_rate - 1.0;
    println!(
        "delay: {:.3} s/s in the profile, {:.3} s/s measured",
        profiled_rate / 1e9,
        measured_rate / 1e9
    );
    assert!(
        error.abs() <= 0.10,
        "the profile's delay is {:+.1} % off what the program measured",
        100.0 * error
    );
    // Every waiting stack is a lock wait, reaching the thread's root.
    let stacks = Stacks::new(profile);
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if frames.contains(&"wait_at_a") || frames.contains(&"wait_at_b") {
            assert_eq!(label(profile, sample, "wait"), Some("lock"), "{frames:?}");
            assert!(
                frames.last() == Some(&"clone3") || frames.last() == Some(&"clone"),
                "{frames:?}"
            );
        }
    }
    // The holders sleep while holding: sleeping is not a synchronization wait.
    assert_eq!(
        total(profile, 1, |frames, _| frames.contains(&"holder")
            && frames.iter().any(|f| f.contains("nanosleep"))),
        0.0
    );
    recording.profile
}

#[test]
fn block_sees_rusts_own_mutex() {
    let _cpu = exclusive();
    let program = Measuring::start(&build_rust(
        "rust_locks",
        &["-C", "opt-level=3", "-C", "debuginfo=1"],
    ));
    let (recording, [rate_a, rate_b]) = program.record("block", SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    let at = |site: &'static str| {
        move |frames: &[&str], _: &Sample| frames.iter().any(|f| f.ends_with(site))
    };
    let delay_a = total(profile, 1, at("::wait_at_a"));
    let delay_b = total(profile, 1, at("::wait_at_b"));
    assert_split(
        "wait_at_a's share of the delay",
        [delay_a, delay_b],
        [rate_a, rate_b],
        0.65..=0.85,
    );
    let stacks = Stacks::new(profile);
    let mut seen = 0;
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if frames
            .iter()
            .any(|f| f.ends_with("::wait_at_a") || f.ends_with("::wait_at_b"))
        {
            seen += 1;
            assert_eq!(label(profile, sample, "wait"), Some("lock"), "{frames:?}");
            assert!(
                frames.iter().any(|f| f.contains("lock_contended")),
                "{frames:?}"
            );
        }
    }
    assert!(seen > 0, "no waiting stack");
}

#[test]
fn block_sees_cpp_locks_and_condition_variables_with_their_callers() {
    let _cpu = exclusive();
    let target = Target::start(&build_cpp("cpp_locks", C_FLAGS));
    let recording = record_full(target.pid(), SECONDS, &["--profile", "block"]);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    let window = window_seconds(profile) * 1e9;
    for (function, wait, at_least) in [
        // The locker waits nearly all the time; the consumer all but a moment every 5 ms.
        ("wait_for_lock", "lock", 0.8),
        ("wait_for_signal", "condvar", 0.8),
    ] {
        let waited = total(profile, 1, |frames, sample| {
            frames.iter().any(|f| f.contains(function))
                && label(profile, sample, "wait") == Some(wait)
        });
        let elsewhere = total(profile, 1, |frames, sample| {
            frames.iter().any(|f| f.contains(function))
                && label(profile, sample, "wait") != Some(wait)
        });
        println!(
            "{function}: {:.2} s as {wait}, {:.2} s otherwise",
            waited / 1e9,
            elsewhere / 1e9
        );
        assert!(
            waited >= at_least * window && elsewhere <= 0.05 * waited,
            "{function}: {:.2} s as {wait}, {:.2} s otherwise, in a {:.2} s window",
            waited / 1e9,
            elsewhere / 1e9,
            window / 1e9
        );
    }
}

/// In a PID namespace of its own (as a sidecar sharing a pod's), the agent knows the threads
/// by other ids than the tracepoints do. waiter_b only waits (it wakes no one), so its id is
/// learned from the short sched_switch window (agent/src/kinds/waits/host_ids.rs); without it,
/// its wakeups, and so holder_b's delay, went missing.
#[test]
fn mutex_in_another_pid_namespace_pairs_every_waiters_wakeups() {
    let _cpu = exclusive();
    let program = build_c("lock_waits", C_FLAGS);
    let dir = tempfile::tempdir().expect("create a directory");
    let (totals, before, after) = (
        dir.path().join("totals"),
        dir.path().join("before"),
        dir.path().join("after"),
    );
    let out = dir.path().join("mutex.pb.gz");
    let script = format!(
        "{program} {totals} > /dev/null & sleep 0.5; cp {totals} {before}; \
         {agent} record --pid $! --seconds {SECONDS} --profile mutex -o {out}; \
         cp {totals} {after}; kill $!",
        program = program.display(),
        totals = totals.display(),
        before = before.display(),
        after = after.display(),
        agent = agent_bin().display(),
        out = out.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script]);
    let finished =
        Running::spawn(cmd, "unshare --pid ... rprof-agent record").finish(Duration::from_secs(60));
    assert!(
        finished.status.success(),
        "{}\n{}",
        finished.stdout,
        finished.stderr
    );
    let read = |path: &Path| -> [f64; 3] {
        let text = fs::read_to_string(path).expect("the program's totals");
        let fields: Vec<f64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        [fields[0], fields[1], fields[2]]
    };
    let ([a0, b0, t0], [a1, b1, t1]) = (read(&before), read(&after));
    let profile = rprof_integration::read_profile(&out);
    // What the waiters measured, per second, over the span the copies cover, for the window.
    let measured = (a1 - a0 + b1 - b0) / (t1 - t0) * window_seconds(&profile) * 1e9;
    let delay_of = |thread: &str| {
        total(&profile, 1, |_, sample| {
            label(&profile, sample, "thread") == Some(thread)
        })
    };
    let (a, b) = (delay_of("holder_a"), delay_of("holder_b"));
    println!(
        "holder_a {:.2} s, holder_b {:.2} s of delay; the waiters measured {:.2} s",
        a / 1e9,
        b / 1e9,
        measured / 1e9
    );
    assert!(
        (a + b) >= 0.8 * measured,
        "{:.2} s of delay attributed, the waiters waited {:.2} s",
        (a + b) / 1e9,
        measured / 1e9
    );
    assert!(
        b >= 0.15 * (a + b),
        "holder_b caused {:.2} s of {:.2} s",
        b / 1e9,
        (a + b) / 1e9
    );
}

#[test]
fn mutex_attributes_the_waiters_delay_to_the_releasing_critical_sections() {
    let profile = lock_holders_in_mutex(&[]);
    // As root the kernel times the waits and copies the releasers' stacks.
    let timing = timing_comment(&profile);
    assert!(timing.contains("timed in the kernel"), "{timing}");
    assert_few_unpaired(&profile);
    assert!(
        (profile.comment.iter()).any(|&c| string(&profile, c).contains("at sched:sched_waking")),
        "{:?}",
        profile.comment
    );
}

#[test]
fn mutex_attributes_the_delay_the_same_where_switch_records_time_the_waits() {
    let profile = lock_holders_in_mutex(TIMED_BY_RECORDS);
    let timing = timing_comment(&profile);
    assert!(timing.contains("record of every switch"), "{timing}");
}

/// Records `lock_holders` (two critical sections that hold a contended lock 3:1 as long) with
/// mutex, the agent run with `env`, and checks the split, the total and the stacks.
fn lock_holders_in_mutex(env: &[(&str, &str)]) -> Profile {
    let _cpu = exclusive();
    let program = Measuring::start(&build_c("lock_holders", C_FLAGS));
    let (recording, [behind_a, behind_b]) = program.record_env("mutex", SECONDS, env);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    assert_eq!(
        sample_types(profile),
        [("contentions", "count"), ("delay", "nanoseconds")]
    );
    let in_section =
        |section: &'static str| move |frames: &[&str], _: &Sample| frames.contains(&section);
    let delay_a = total(profile, 1, in_section("section_a"));
    let delay_b = total(profile, 1, in_section("section_b"));
    let share = delay_a / (delay_a + delay_b);
    let truth = behind_a / (behind_a + behind_b);
    println!(
        "section_a: {:.1} % of the delay it and section_b caused, the waiter measured {:.1} %",
        100.0 * share,
        100.0 * truth
    );
    assert!(
        (0.65..=0.85).contains(&truth),
        "the sections did not hold the lock about 3:1 ({:.1} %)",
        100.0 * truth
    );
    assert!(
        (share - 0.75).abs() <= 0.05 && (share - truth).abs() <= 0.05,
        "section_a caused {:.1} % of the delay; 75 % by construction, {:.1} % measured",
        100.0 * share,
        100.0 * truth
    );
    // The releases are what the waiter waited behind: about its whole delay, and the
    // releasing stack is the unlock in the section, down to the thread's root.
    let profiled_rate = (delay_a + delay_b) / window_seconds(profile);
    let measured_rate = behind_a + behind_b;
    let error = profiled_rate / measured_rate - 1.0;
    assert!(
        error.abs() <= 0.15,
        "the attributed delay is {:+.1} % off what the waiter measured",
        100.0 * error
    );
    let stacks = Stacks::new(profile);
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if frames.contains(&"section_a") || frames.contains(&"section_b") {
            assert!(
                frames.iter().any(|f| f.contains("pthread_mutex_unlock")),
                "{frames:?}"
            );
            assert_eq!(frames.last(), Some(&"clone3"), "{frames:?}");
        }
    }
    recording.profile
}

#[test]
fn wall_splits_a_threads_time_on_and_off_the_cpu_and_names_each_wait() {
    let _cpu = exclusive();
    let program = Measuring::start(&build_c("half_asleep", C_FLAGS));
    let (recording, [cpu_rate, sleep_rate]) = program.record("wall", SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    assert_eq!(
        sample_types(profile),
        [("samples", "count"), ("wall", "nanoseconds")]
    );
    assert_eq!(string(profile, profile.default_sample_type), "wall");
    let of_thread = |thread: &'static str, state: &'static str| {
        move |_: &[&str], sample: &Sample| {
            label(profile, sample, "thread") == Some(thread)
                && label(profile, sample, "state") == Some(state)
        }
    };
    let on = total(profile, 1, of_thread("alternating", "on-cpu"));
    let off = total(profile, 1, of_thread("alternating", "off-cpu"));
    assert_split(
        "alternating's time on the CPU",
        [on, off],
        [cpu_rate, sleep_rate],
        0.35..=0.65,
    );
    // Threads blocked the whole window show with what they wait for, for about the window.
    let window = window_seconds(profile) * 1e9;
    for (function, wait) in [
        ("read_pipe_forever", "io"),
        ("recv_socket_forever", "io"),
        ("epoll_forever", "poll"),
        ("nanosleep_forever", "sleep"),
    ] {
        let waited = total(profile, 1, |frames, sample| {
            frames.contains(&function) && label(profile, sample, "wait") == Some(wait)
        });
        let elsewhere = total(profile, 1, |frames, sample| {
            frames.contains(&function) && label(profile, sample, "wait") != Some(wait)
        });
        println!("{function}: {:.2} s as {wait}", waited / 1e9);
        assert!(
            waited >= 0.9 * window && elsewhere == 0.0,
            "{function}: {:.2} s as {wait}, {:.2} s otherwise, in a {:.2} s window",
            waited / 1e9,
            elsewhere / 1e9,
            window / 1e9
        );
    }
}

/// Three threads spinning on one CPU run a third of the time each and wait for the CPU the
/// rest: no wait, but their time. `wall` shows it as `state` = `runnable`, so each thread's
/// time adds up to the window, as in fgprof.
#[test]
fn wall_shows_the_time_threads_wait_for_a_cpu_as_runnable() {
    let profile = spinners_sharing_a_cpu_in_wall(&[]);
    assert!(
        (profile.comment.iter())
            .any(|&c| string(&profile, c).starts_with("preemptions (time runnable off the CPU")),
        "{:?}",
        profile.comment
    );
}

#[test]
fn wall_shows_runnable_time_the_same_where_switch_records_time_it() {
    let profile = spinners_sharing_a_cpu_in_wall(TIMED_BY_RECORDS);
    let timing = timing_comment(&profile);
    assert!(timing.contains("record of every switch"), "{timing}");
}

/// Records `busy_threads 3` pinned to one CPU with wall, the agent run with `env`, and checks
/// each spinning thread's time: on the CPU about a third, runnable about two thirds, the whole
/// window in all, its runnable stacks in the spinning function.
fn spinners_sharing_a_cpu_in_wall(env: &[(&str, &str)]) -> Profile {
    let _cpu = exclusive();
    let target = Target::spawn(&build_c("busy_threads", C_FLAGS), &["3"]);
    pin_to_last_cpu(target.pid());
    let recording = record_full_env(target.pid(), SECONDS, &["--profile", "wall"], env);
    let profile = recording.profile;
    println!("{}", recording.stdout);
    let window = window_seconds(&profile) * 1e9;
    let stacks = Stacks::new(&profile);
    let mut spinners: std::collections::BTreeMap<&str, [f64; 3]> = Default::default();
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if !frames.contains(&"busy_caller") {
            continue;
        }
        let Some(tid) = label(&profile, sample, "tid") else {
            continue;
        };
        let state = match label(&profile, sample, "state") {
            Some("on-cpu") => 0,
            Some("runnable") => 1,
            _ => 2,
        };
        spinners.entry(tid).or_default()[state] += sample.value[1] as f64;
    }
    assert_eq!(spinners.len(), 3, "spinning threads: {spinners:?}");
    for (tid, [on, runnable, other]) in &spinners {
        let all = on + runnable + other;
        println!(
            "thread {tid}: on the CPU {:.2} s, runnable {:.2} s, otherwise {:.2} s, of a {:.2} s \
             window",
            on / 1e9,
            runnable / 1e9,
            other / 1e9,
            window / 1e9
        );
        assert!(
            (0.85 * window..=1.15 * window).contains(&all),
            "thread {tid}: {:.2} s in all, in a {:.2} s window",
            all / 1e9,
            window / 1e9
        );
        assert!(
            (0.55..=0.78).contains(&(runnable / all)),
            "thread {tid}: runnable {:.1} % of its time, two thirds expected",
            100.0 * runnable / all
        );
        assert!(
            *other <= 0.05 * all,
            "thread {tid}: {:.2} s neither",
            other / 1e9
        );
    }
    profile
}

/// A thread that spends most of its CPU time in the kernel (read() of /dev/zero): that time is
/// on-CPU time in `wall`, under the user stack that made the system call with the call on top,
/// as in the CPU profile. Sampled in user mode only, it went missing from the profile (neither
/// on nor off the CPU).
#[test]
fn wall_counts_time_in_the_kernel_as_on_cpu_under_the_system_call() {
    let _cpu = exclusive();
    let target = Target::start(&build_c("syscall_heavy", C_FLAGS));
    let before = target.cpu_time();
    let recording = record_full(target.pid(), SECONDS, &["--profile", "wall"]);
    let used = target.cpu_time().saturating_sub(before).as_secs_f64() * 1e9;
    let profile = &recording.profile;
    let on_cpu = total(profile, 1, |_, sample| {
        label(profile, sample, "state") == Some("on-cpu")
    });
    let in_read = total(profile, 1, |frames, sample| {
        label(profile, sample, "state") == Some("on-cpu")
            && frames.first() == Some(&"[syscall read]")
            && frames.contains(&"read_zeros")
            && frames.contains(&"main")
    });
    println!(
        "on CPU: {:.2} s in wall against {:.2} s of CPU time; under [syscall read]: {:.0} %",
        on_cpu / 1e9,
        used / 1e9,
        100.0 * in_read / on_cpu
    );
    assert!(
        (on_cpu / used - 1.0).abs() <= 0.2,
        "wall has {:.2} s on CPU, the target used {:.2} s",
        on_cpu / 1e9,
        used / 1e9
    );
    assert!(
        in_read >= 0.3 * on_cpu,
        "only {:.0} % of the on-CPU time under [syscall read] on read_zeros",
        100.0 * in_read / on_cpu
    );
}

/// A Go server's on-CPU time in `wall` follows its stack switches (systemstack, vdso calls,
/// cgo, signal handlers) as its CPU profile does: the program that copies goroutine stacks
/// is the per-CPU CPU-time events' filter.
#[test]
fn wall_follows_a_go_program_s_stack_switches_on_the_cpu() {
    let _cpu = exclusive();
    let target = Target::start(&programs::go_server());
    let recording = record_full(target.pid(), 5, &["--profile", "wall"]);
    let profile = &recording.profile;
    let prefix = "goroutine stacks: ";
    let comment = comment_starting(profile, prefix).expect("a goroutine stacks comment");
    println!("{comment}");
    let followed: u64 = comment[prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(followed > 0, "{comment}");
    let on_cpu = Profile {
        sample: (profile.sample.iter())
            .filter(|sample| label(profile, sample, "state") == Some("on-cpu"))
            .cloned()
            .collect(),
        ..profile.clone()
    };
    assert_go_stacks_rooted(&on_cpu, 200);
}

#[test]
fn the_target_runs_at_full_speed_again_once_the_agent_is_killed() {
    let _cpu = exclusive();
    let program = Measuring::start(&build_c("ping_pong", C_FLAGS));
    // Round trips per second of the program's own CPU time: what sampling costs it is work in
    // its context (the kernel's stack copies), whatever else the machine runs meanwhile. The
    // best of three half seconds. Both threads on one CPU: unpinned, they bounce between the
    // CPUs as the agent and the tests come and go, and their speed with them (by a third).
    let pid = program.target.pid();
    pin_to_last_cpu(pid);
    let measure = || {
        (0..3)
            .map(|_| {
                let (before, cpu_before) = (program.totals(), cpu_time(pid));
                std::thread::sleep(Duration::from_millis(500));
                let (after, cpu_after) = (program.totals(), cpu_time(pid));
                let cpu = (cpu_after - cpu_before).as_secs_f64();
                (after.first - before.first) as f64 / cpu.max(1e-3)
            })
            .fold(0.0, f64::max)
    };
    let baseline = measure();
    let dir = tempfile::tempdir().expect("create a directory");
    let out = dir.path().join("prof.pb.gz");
    let pid = pid.to_string();
    let mut cmd = agent_command(&[
        "record",
        "--pid",
        &pid,
        "--seconds",
        "60",
        "--profile",
        "block,mutex,wall",
        "-o",
    ]);
    cmd.arg(&out);
    let agent = Running::spawn(cmd, "rprof-agent record");
    std::thread::sleep(Duration::from_millis(500));
    let sampled = measure();
    let loaded = our_bpf_programs();
    for name in ["on_switch", "on_waking", "keep_target"] {
        assert!(
            loaded.iter().any(|(_, loaded)| loaded == name),
            "the agent recorded without its BPF program {name} (as root it must load it): \
             {loaded:?}"
        );
    }
    agent.signal(libc::SIGKILL);
    let killed = agent.finish(Duration::from_secs(10));
    assert!(!killed.status.success(), "the agent was killed");
    // The kernel closes every event of a process that dies: nothing samples the target now,
    // and the BPF programs that timed its waits are unloaded with their last descriptor.
    std::thread::sleep(Duration::from_millis(500));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = loaded.clone();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        // The kernel releases a program once its last link is gone, a moment after the
        // process that held it.
        std::thread::sleep(Duration::from_millis(100));
        let now = our_bpf_programs();
        left.retain(|program| now.contains(program));
    }
    assert!(
        left.is_empty(),
        "BPF programs of the killed agent are still loaded: {left:?}"
    );
    let after = measure();
    println!(
        "round trips per CPU second: {baseline:.0} before, {sampled:.0} while sampled, \
         {after:.0} after the agent was killed"
    );
    assert!(
        // The margin is the machine's noise: sampling 1 switch in N keeps even the sampled
        // speed close, so only a clear loss would mean events outlived the agent.
        after >= 0.85 * baseline,
        "{after:.0} round trips per CPU second after the agent was killed, {baseline:.0} \
         before it started"
    );
}

/// Pins every thread of `pid` to the highest CPU this process may run on (`taskset`), where it
/// may run on two or more.
fn pin_to_last_cpu(pid: u32) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it for this
    // thread, within the size passed.
    let allowed: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0,
            "sched_getaffinity"
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    };
    let (Some(&last), true) = (allowed.last(), allowed.len() >= 2) else {
        return;
    };
    let status = Command::new("taskset")
        .args(["-a", "-c", "-p", &last.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run taskset (util-linux)");
    assert!(status.success(), "taskset failed on PID {pid}");
}

/// The agent's BPF programs loaded now (by any process): their ids and names.
fn our_bpf_programs() -> Vec<(u32, String)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|program| Some((program.id(), program.name_as_str()?.to_owned())))
        .filter(|(_, name)| ["on_switch", "on_waking", "keep_target"].contains(&name.as_str()))
        .collect()
}

#[test]
fn without_perfmon_the_waiting_kinds_say_what_they_need() {
    let _cpu = exclusive();
    require_kernel_sampling_refused();
    let as_user = AS_UNPRIVILEGED;
    let dir = tempfile::tempdir().expect("create a directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let program = build_c("lock_waits", C_FLAGS);
    let mut target_args: Vec<&OsStr> = as_user.iter().map(OsStr::new).collect();
    let totals = dir.path().join("totals");
    target_args.extend([program.as_os_str(), totals.as_os_str()]);
    let target = Target::spawn(Path::new("setpriv"), &target_args);
    for kind in ["block", "mutex", "wall"] {
        let out = dir.path().join(format!("{kind}.pb.gz"));
        let pid = target.pid().to_string();
        let mut cmd = Command::new("setpriv");
        cmd.args(as_user).arg(agent_bin()).args([
            "record",
            "--pid",
            &pid,
            "--seconds",
            "1",
            "--profile",
            kind,
            "-o",
        ]);
        cmd.arg(&out);
        let finished = Running::spawn(cmd, "rprof-agent record").finish(Duration::from_secs(20));
        assert_one_line_error(
            &finished,
            kind,
            &["context switches", "CAP_PERFMON", "perf_event_paranoid"],
        );
        assert!(!out.exists(), "{kind}: a profile was written");
    }
}
