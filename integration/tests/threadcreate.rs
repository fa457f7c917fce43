//! `rprof-agent record --profile threadcreate`, end to end: real programs creating threads, real
//! uprobes, real profiles.
//!
//! thread_churn creates short-lived threads from two call paths, 3:1, and counts them in a
//! file; the profile must count as many, split 3:1, each under its full creating stack. The
//! tests hold the CPU lock: the agent's counts are only as good as the CPU it gets.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rprof_integration::{
    assert_success, build_c, build_rust, exclusive, go_tool_pprof, label, read_profile,
    record_full, run_agent, string, total_samples, Finished, Recording, Running, Stacks, Target,
};
use rprof_proto::pb::Profile;

/// Optimized, with DWARF, without frame pointers: only unwind tables can unwind it.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

/// Recording window, seconds.
const SECONDS: u32 = 3;

fn thread_churn() -> PathBuf {
    build_c("thread_churn", C_FLAGS)
}

/// thread_churn, running, and the file where it counts the threads it created.
struct Churning {
    target: Target,
    counter: PathBuf,
    _dir: tempfile::TempDir,
}

impl Churning {
    fn start() -> Churning {
        let dir = tempfile::tempdir().expect("create a directory");
        let counter = dir.path().join("created");
        let target = Target::spawn(&thread_churn(), &[&counter]);
        Churning {
            target,
            counter,
            _dir: dir,
        }
    }

    /// Threads created so far, by the program's own count.
    fn created(&self) -> u64 {
        let text = fs::read_to_string(&self.counter)
            .unwrap_or_else(|err| panic!("read {}: {err}", self.counter.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|err| panic!("counter file holds {text:?}: {err}"))
    }
}

/// A threadcreate recording of thread_churn, with what the program counted meanwhile.
struct Counted {
    recording: Recording,
    /// The program's creations per second over the agent's whole run.
    rate: f64,
}

impl Counted {
    fn record(churning: &Churning, extra_args: &[&str]) -> Counted {
        let (before, started) = (churning.created(), Instant::now());
        let recording = record_full(churning.target.pid(), SECONDS, extra_args);
        let (after, elapsed) = (churning.created(), started.elapsed());
        Counted {
            recording,
            rate: (after - before) as f64 / elapsed.as_secs_f64(),
        }
    }

    fn profile(&self) -> &Profile {
        &self.recording.profile
    }
}

/// Samples (weighted) whose stack holds `function`, among those holding `a` or `b`.
fn split(profile: &Profile, a: &str, b: &str) -> (i64, i64) {
    let stacks = Stacks::new(profile);
    let mut counts = (0, 0);
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        let weight = sample.value[0];
        if frames.contains(&a) {
            counts.0 += weight;
        } else if frames.contains(&b) {
            counts.1 += weight;
        }
    }
    counts
}

/// The samples' stacks, as "leaf;...;root" lines, for failure messages.
fn describe(profile: &Profile) -> String {
    let stacks = Stacks::new(profile);
    profile
        .sample
        .iter()
        .map(|sample| format!("{:>6} {}", sample.value[0], stacks.frames(sample).join(";")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_creation_is_counted_with_its_creating_stack() {
    let _cpu = exclusive();
    let churning = Churning::start();
    let counted = Counted::record(&churning, &["--profile", "threadcreate"]);
    let profile = counted.profile();

    // As many creations as the program made while the probes were in place: its rate over the
    // agent's run, times the window.
    let window = Duration::from_nanos(u64::try_from(profile.duration_nanos).unwrap_or(0));
    let expected = counted.rate * window.as_secs_f64();
    let total = total_samples(profile);
    assert!(
        expected > 100.0 && (total as f64 - expected).abs() <= 0.1 * expected,
        "{total} creations in the profile, the program made ~{expected:.0} in {window:?}\n{}",
        describe(profile)
    );

    let (a, b) = split(profile, "spawn_from_a", "spawn_from_b");
    assert_eq!(
        a + b,
        total,
        "stacks through neither creating function:\n{}",
        describe(profile)
    );
    let share = a as f64 / total as f64;
    assert!(
        (share - 0.75).abs() <= 0.05,
        "spawn_from_a holds {a} of {total} creations, expected 75 ± 5 %\n{}",
        describe(profile)
    );
}

#[test]
fn creating_stacks_are_symbolized_down_to_main() {
    let _cpu = exclusive();
    let churning = Churning::start();
    let counted = Counted::record(&churning, &["--profile", "threadcreate"]);
    let profile = counted.profile();
    let stacks = Stacks::new(profile);
    assert!(!profile.sample.is_empty(), "no creation recorded");
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        // The probed function is the leaf; the creating function and its own caller follow.
        let leaf = frames.first().copied().unwrap_or("");
        assert!(leaf.contains("pthread_create"), "leaf {leaf}: {frames:?}");
        let creator = ["spawn_from_a", "spawn_from_b"]
            .into_iter()
            .find(|f| frames.contains(f))
            .unwrap_or_else(|| panic!("no creating function in {frames:?}"));
        let caller = if creator == "spawn_from_a" {
            "round_a"
        } else {
            "round_b"
        };
        let position = |name: &str| frames.iter().position(|f| *f == name);
        assert!(
            position(creator) < position(caller) && position(caller) < position("main"),
            "expected {creator} < {caller} < main in {frames:?}"
        );
        assert_eq!(
            label(profile, sample, "thread"),
            Some("thread_churn"),
            "creating thread's name"
        );
    }
}

#[test]
fn profile_has_the_shape_of_a_go_threadcreate_profile() {
    let _cpu = exclusive();
    let churning = Churning::start();
    let counted = Counted::record(&churning, &["--profile", "threadcreate"]);
    let profile = counted.profile();
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (string(profile, t.r#type), string(profile, t.unit)))
        .collect();
    assert_eq!(types, [("threadcreate", "count")]);
    let period_type = profile.period_type.as_ref().expect("a period type");
    assert_eq!(
        (
            string(profile, period_type.r#type),
            string(profile, period_type.unit)
        ),
        ("threadcreate", "count")
    );
    assert_eq!(profile.period, 1);
    assert!(profile.time_nanos > 0 && profile.duration_nanos > 0);

    // The churn: every thread the program creates is joined within its round.
    let comments: Vec<&str> = profile
        .comment
        .iter()
        .map(|&c| string(profile, c))
        .collect();
    let churn = comments
        .iter()
        .find(|c| c.contains("exited within the window"))
        .unwrap_or_else(|| panic!("no churn among the comments {comments:?}"));
    let (created, exited) = churn_figures(churn);
    assert!(
        created > 0 && created - exited <= 4,
        "all but the last round's threads exit: {churn}"
    );
    let summary = &counted.recording.stdout;
    assert!(summary.contains(churn), "{summary}");
    assert!(summary.contains("thread creations"), "{summary}");
}

/// (created, exited) from "created N threads, M exited within the window".
fn churn_figures(churn: &str) -> (u64, u64) {
    let numbers: Vec<u64> = churn
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [created, exited] => (created, exited),
        _ => panic!("unexpected churn line {churn:?}"),
    }
}

#[test]
fn go_tool_pprof_reads_the_profile() {
    let _cpu = exclusive();
    let churning = Churning::start();
    let counted = Counted::record(&churning, &["--profile", "threadcreate"]);
    let dir = tempfile::tempdir().expect("create a directory");
    let file = dir.path().join("threadcreate.pb.gz");
    fs::write(&file, &counted.recording.bytes).expect("write the profile");
    let raw = go_tool_pprof(&["-raw".as_ref(), file.as_os_str()]);
    assert_success(&raw, "go tool pprof -raw");
    assert!(
        raw.stdout.contains("PeriodType: threadcreate count"),
        "{}",
        raw.stdout
    );
    assert!(raw.stdout.contains("spawn_from_a"), "{}", raw.stdout);
    let stderr = raw.stderr.to_lowercase();
    assert!(
        !stderr.contains("symboliz") && !stderr.contains("http"),
        "pprof tried to symbolize:\n{}",
        raw.stderr
    );
}

/// `record ARGS` with `-o DIR/prof.pb.gz`; returns the agent's output and the directory.
fn record_into(pid: u32, profiles: &str, dir: &Path) -> Finished {
    let mut args: Vec<OsString> = ["record", "--pid", &pid.to_string(), "--seconds", "2"]
        .map(OsString::from)
        .into();
    args.extend(["--profile", profiles, "--top", "0", "-o"].map(OsString::from));
    args.push(dir.join("prof.pb.gz").into_os_string());
    run_agent(&args, Duration::from_secs(90))
}

#[test]
fn cpu_and_threadcreate_are_recorded_in_one_window() {
    let _cpu = exclusive();
    let churning = Churning::start();
    let dir = tempfile::tempdir().expect("create a directory");
    let finished = record_into(churning.target.pid(), "cpu,threadcreate", dir.path());
    assert_success(&finished, "rprof-agent record --profile cpu,threadcreate");

    let cpu = read_profile(&dir.path().join("prof.cpu.pb.gz"));
    let types: Vec<&str> = cpu
        .sample_type
        .iter()
        .map(|t| string(&cpu, t.r#type))
        .collect();
    assert_eq!(types, ["samples", "cpu"]);

    let threadcreate = read_profile(&dir.path().join("prof.threadcreate.pb.gz"));
    let (a, b) = split(&threadcreate, "spawn_from_a", "spawn_from_b");
    assert!(
        a > 0 && b > 0,
        "creations missing:\n{}",
        describe(&threadcreate)
    );
    assert!(!dir.path().join("prof.pb.gz").exists());
    // One window: both profiles start together and last as long.
    assert_eq!(cpu.time_nanos, threadcreate.time_nanos);
    assert_eq!(cpu.duration_nanos, threadcreate.duration_nanos);
    for name in ["prof.cpu.pb.gz", "prof.threadcreate.pb.gz"] {
        assert!(finished.stdout.contains(name), "{}", finished.stdout);
    }
}

/// A statically linked program that starts no thread has no pthread_create to probe.
fn single_threaded_static() -> PathBuf {
    build_c("leaf_ratio", &["-O2", "-static"])
}

#[test]
fn without_a_creation_function_the_cpu_profile_is_still_recorded() {
    let _cpu = exclusive();
    let target = Target::spawn(&single_threaded_static(), &["60"]);
    let dir = tempfile::tempdir().expect("create a directory");

    let finished = record_into(target.pid(), "cpu,threadcreate", dir.path());
    assert_success(&finished, "rprof-agent record --profile cpu,threadcreate");
    let stderr = finished.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
    assert!(
        stderr.contains("threadcreate profile is unavailable")
            && stderr.contains("no thread-creation function"),
        "{stderr}"
    );
    assert!(total_samples(&read_profile(&dir.path().join("prof.cpu.pb.gz"))) > 0);
    assert!(!dir.path().join("prof.threadcreate.pb.gz").exists());

    let alone = record_into(target.pid(), "threadcreate", dir.path());
    assert!(!alone.status.success(), "exit 0 without a profile");
    let stderr = alone.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
    assert!(stderr.contains("no thread-creation function"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_rust_std_thread_creator_is_named() {
    let _cpu = exclusive();
    let program = build_rust("rust_spawner", &["-O", "-C", "debuginfo=1"]);
    let target = Target::start(&program);
    let recording = record_full(target.pid(), 2, &["--profile", "threadcreate"]);
    let profile = &recording.profile;
    let stacks = Stacks::new(profile);
    assert!(total_samples(profile) > 50, "{}", describe(profile));
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        let position = |name: &str| frames.iter().position(|f| *f == name);
        assert!(
            position("rust_spawner::spawn_helper").is_some()
                && position("rust_spawner::spawn_helper") < position("rust_spawner::main"),
            "spawn_helper under main expected in {frames:?}"
        );
        assert!(
            frames
                .first()
                .is_some_and(|leaf| leaf.contains("pthread_create")),
            "{frames:?}"
        );
        assert_eq!(label(profile, sample, "thread"), Some("rust_spawner"));
    }
}

/// The profile's comments.
fn comments(profile: &Profile) -> Vec<&str> {
    profile
        .comment
        .iter()
        .map(|&c| string(profile, c))
        .collect()
}

/// N from the comment "records of other processes dropped: N".
fn foreign_dropped(profile: &Profile) -> u64 {
    let all = comments(profile);
    all.iter()
        .find_map(|c| c.strip_prefix("records of other processes dropped: "))
        .unwrap_or_else(|| panic!("no count of other processes' records in {all:?}"))
        .parse()
        .expect("a number")
}

/// `record --pid PID --seconds 2 --profile threadcreate`, the agent's environment set from
/// `env`; the profile.
fn record_threadcreate(pid: u32, env: &[(&str, &str)]) -> Profile {
    let dir = tempfile::tempdir().expect("create a directory");
    let out = dir.path().join("tc.pb.gz");
    let mut command = rprof_integration::agent_command(&[
        OsString::from("record"),
        "--pid".into(),
        pid.to_string().into(),
        "--seconds".into(),
        "2".into(),
        "--profile".into(),
        "threadcreate".into(),
        "--top".into(),
        "0".into(),
        "-o".into(),
        out.clone().into_os_string(),
    ]);
    command.envs(env.iter().copied());
    let finished = Running::spawn(command, "rprof-agent record").finish(Duration::from_secs(90));
    assert_success(&finished, "rprof-agent record --profile threadcreate");
    read_profile(&out)
}

#[test]
fn a_neighbour_creating_threads_passes_nothing_through_the_agent() {
    let _cpu = exclusive();
    if !rprof_integration::is_root() {
        eprintln!("skipped: tracefs probes need root");
        return;
    }
    let target = Churning::start();
    // Another process creating threads through the same libc's pthread_create, flat out.
    let neighbour = Churning::start();
    let profile = record_threadcreate(target.target.pid(), &[]);
    let all = comments(&profile);
    assert!(
        all.iter()
            .any(|c| c.contains("opened on the target's threads only")),
        "the probes were not scoped to the target: {all:?}"
    );
    assert_eq!(foreign_dropped(&profile), 0, "{all:?}");
    let (a, b) = split(&profile, "spawn_from_a", "spawn_from_b");
    assert!(a > 0 && b > 0, "{}", describe(&profile));
    assert!(neighbour.created() > 0);

    // Per CPU for every process (where tracefs cannot be written), the neighbour's hits reach
    // the agent's rings and are dropped there: what the scoped probes avoid.
    let per_cpu = record_threadcreate(target.target.pid(), &[("RPROF_THREADCREATE_PER_CPU", "1")]);
    let all = comments(&per_cpu);
    assert!(
        all.iter().any(|c| c.contains("per CPU for every process")),
        "{all:?}"
    );
    assert!(foreign_dropped(&per_cpu) > 0, "{all:?}");
    let (a, b) = split(&per_cpu, "spawn_from_a", "spawn_from_b");
    assert!(a > 0 && b > 0, "{}", describe(&per_cpu));
}

#[test]
fn a_launched_command_is_probed_on_its_own_threads() {
    let _cpu = exclusive();
    if !rprof_integration::is_root() {
        eprintln!("skipped: tracefs probes need root");
        return;
    }
    let dir = tempfile::tempdir().expect("create a directory");
    let out = dir.path().join("tc.pb.gz");
    let counter = dir.path().join("created");
    let program = thread_churn();
    let args: Vec<OsString> = vec![
        "record".into(),
        "--seconds".into(),
        "2".into(),
        "--profile".into(),
        "threadcreate".into(),
        "--top".into(),
        "0".into(),
        "-o".into(),
        out.clone().into_os_string(),
        "--".into(),
        program.into_os_string(),
        counter.into_os_string(),
    ];
    let finished = run_agent(&args, Duration::from_secs(90));
    assert_success(&finished, "rprof-agent record -- thread_churn");
    let profile = read_profile(&out);
    let all = comments(&profile);
    assert!(
        all.iter()
            .any(|c| c.contains("opened on the target's threads only")),
        "{all:?}"
    );
    let (a, b) = split(&profile, "spawn_from_a", "spawn_from_b");
    assert!(
        a > 0 && b > 0 && a + b > 100,
        "creations missing:\n{}",
        describe(&profile)
    );
}
