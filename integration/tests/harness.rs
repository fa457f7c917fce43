//! Tests of the test harness itself: the programs build and behave as their claims need, the
//! process wrappers leave nothing behind, and the profile helpers read stacks right.
//! None of these runs the agent.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message;
use rprof_integration::elf::{build_id, section_names};
use rprof_integration::profile::UNKNOWN;
use rprof_integration::{
    decode_profile, exclusive_cpu, frames_of, label, leaf_share, leaf_split, programs, share_of,
    total_samples, Running, Target,
};
use rprof_proto::pb::{Function, Label, Line, Location, Mapping, Profile, Sample};

fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the target's threads");
    let mut names: Vec<String> = tasks
        .map(|task| {
            let comm = task.expect("a task entry").path().join("comm");
            std::fs::read_to_string(comm)
                .unwrap_or_default()
                .trim_end()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_long_running_program_says_ready_and_is_killed_on_drop() {
    let _cpu = exclusive_cpu();
    let programs = [
        (programs::leaf_ratio(), vec![]),
        (programs::nodwarf(), vec![]),
        (programs::deep_stack(), vec![]),
        (programs::inline_cpp(), vec![]),
        (programs::late_threads(), vec!["60"]),
        (programs::rust_target(), vec![]),
        (programs::go_target(), vec![]),
    ];
    for (path, args) in programs {
        let target = Target::spawn(&path, &args);
        let pid = target.pid();
        assert!(is_running(pid), "{} died after ready", path.display());
        drop(target);
        assert!(!is_running(pid), "{} outlived its Target", path.display());
    }
}

#[test]
fn exiting_programs_are_reaped_at_once() {
    let _cpu = exclusive_cpu();
    let target = Target::start(&programs::exits_soon());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !target.has_exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(target.has_exited(), "exits_soon still runs after 5 s");
    // Reaped, not a zombie: this is what lets an agent see its target go away.
    assert!(!is_running(target.pid()), "exits_soon lingers in /proc");
}

#[test]
fn cpu_time_counts_a_spinning_thread() {
    let _cpu = exclusive_cpu();
    let target = Target::start(&programs::leaf_ratio());
    let before = target.cpu_time();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = target.cpu_time() - before;
    // One thread cannot use more than the wall-clock time (plus a clock tick of rounding);
    // even a busy two-core machine gives it a good part of it.
    let tick = Duration::from_millis(10);
    assert!(
        used <= wall.elapsed() + tick,
        "{used:?} of CPU in {:?}",
        wall.elapsed()
    );
    assert!(
        used >= Duration::from_millis(200),
        "{used:?} of CPU in a second"
    );
}

#[test]
fn timed_programs_exit_zero_on_time() {
    let _cpu = exclusive_cpu();
    for path in [programs::leaf_ratio(), programs::nodwarf()] {
        let started = Instant::now();
        let status = Command::new(&path).arg("0.5").output().expect("run").status;
        assert!(status.success(), "{} {status}", path.display());
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(3),
            "{} ran {elapsed:?}",
            path.display()
        );
    }
}

#[test]
fn late_threads_appear_late_and_named() {
    let _cpu = exclusive_cpu();
    let target = Target::spawn(&programs::late_threads(), &["0.5"]);
    assert_eq!(thread_names(target.pid()), ["late_threads"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        thread_names(target.pid()),
        ["late-1", "late-2", "late_threads"]
    );
}

#[test]
fn rust_workers_are_named() {
    let _cpu = exclusive_cpu();
    let target = Target::spawn(&programs::rust_target(), &["2"]);
    assert_eq!(
        thread_names(target.pid()),
        ["rust_target", "worker-0", "worker-1"]
    );
}

#[test]
fn binaries_hold_what_their_claims_need() {
    let has = |path: &Path, section: &str| section_names(path).iter().any(|s| s == section);

    let nodwarf = programs::nodwarf();
    assert!(!has(&nodwarf, ".debug_info"), "nodwarf kept .debug_info");
    assert!(!has(&nodwarf, ".debug_line"), "nodwarf kept .debug_line");
    assert!(has(&nodwarf, ".symtab") && has(&nodwarf, ".eh_frame"));

    let go = programs::go_target();
    assert!(
        has(&go, ".debug_frame"),
        "the Go binary has no .debug_frame"
    );
    assert!(!has(&go, ".eh_frame"), "the Go binary has an .eh_frame");

    for path in [programs::leaf_ratio(), programs::inline_cpp()] {
        assert!(has(&path, ".debug_info"), "{} lacks DWARF", path.display());
        let id = build_id(&path).unwrap_or_default();
        assert!(id.len() >= 16, "{} has build id {id:?}", path.display());
    }
}

#[test]
fn builds_are_cached_under_the_program_name() {
    let first = programs::leaf_ratio();
    let second = programs::leaf_ratio();
    assert_eq!(first, second);
    assert_eq!(
        first.file_name().and_then(|n| n.to_str()),
        Some("leaf_ratio")
    );
    // Stripping makes a new file; the unstripped build stays as it was.
    let stripped = programs::nodwarf();
    assert_eq!(
        stripped.file_name().and_then(|n| n.to_str()),
        Some("nodwarf")
    );
    assert_ne!(stripped.parent(), first.parent());
}

#[test]
fn running_captures_both_streams_and_the_status() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
    let finished = Running::spawn(cmd, "sh").finish(Duration::from_secs(10));
    assert_eq!(finished.status.code(), Some(3));
    assert_eq!(finished.stdout, "out\n");
    assert_eq!(finished.stderr, "err\n");
}

#[test]
fn running_delivers_signals() {
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let running = Running::spawn(cmd, "sleep");
    running.signal(libc::SIGTERM);
    let finished = running.finish(Duration::from_secs(5));
    assert!(finished.elapsed < Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&finished.status),
        Some(libc::SIGTERM)
    );
}

#[test]
#[should_panic(expected = "still runs after")]
fn running_enforces_its_deadline() {
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    Running::spawn(cmd, "sleep").finish(Duration::from_millis(200));
}

/// A profile with two samples whose leaf location holds an inline frame:
/// 3 × (step ← run_hot ← main) on thread "a", 1 × (run_hot ← main) on thread "b".
fn inline_profile() -> Profile {
    let strings = [
        "", "step", "run_hot", "main", "thread", "a", "b", "samples", "count",
    ];
    let function = |id: u64, name: i64| Function {
        id,
        name,
        system_name: name,
        ..Default::default()
    };
    let line = |function_id: u64| Line {
        function_id,
        line: 1,
        column: 0,
    };
    let location = |id: u64, lines: Vec<Line>| Location {
        id,
        mapping_id: 1,
        address: 0x1000 * id,
        line: lines,
        is_folded: false,
    };
    let sample = |location_id: Vec<u64>, count: i64, thread: i64| Sample {
        location_id,
        value: vec![count],
        label: vec![Label {
            key: 4,
            str: thread,
            num: 0,
            num_unit: 0,
        }],
    };
    Profile {
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        mapping: vec![Mapping {
            id: 1,
            has_functions: true,
            ..Default::default()
        }],
        function: vec![function(1, 1), function(2, 2), function(3, 3)],
        location: vec![
            location(1, vec![line(1), line(2)]),
            location(2, vec![line(3)]),
            location(3, vec![line(2)]),
            location(4, vec![]),
        ],
        sample: vec![sample(vec![1, 2], 3, 5), sample(vec![3, 2, 4], 1, 6)],
        ..Default::default()
    }
}

#[test]
fn profile_helpers_expand_inline_frames_and_weigh_by_count() {
    let profile = inline_profile();
    assert_eq!(
        frames_of(&profile, &profile.sample[0]),
        ["step", "run_hot", "main"]
    );
    assert_eq!(
        frames_of(&profile, &profile.sample[1]),
        ["run_hot", "main", UNKNOWN]
    );
    assert_eq!(total_samples(&profile), 4);
    assert_eq!(share_of(&profile, "run_hot"), 1.0);
    assert_eq!(share_of(&profile, "step"), 0.75);
    assert_eq!(leaf_share(&profile, "step"), 0.75);
    assert_eq!(leaf_share(&profile, "main"), 0.0);
    let split = leaf_split(&profile, "run_hot", "step");
    assert_eq!((split.hits, split.total), (1, 4));
    assert_eq!(label(&profile, &profile.sample[0], "thread"), Some("a"));
    assert_eq!(label(&profile, &profile.sample[1], "thread"), Some("b"));
    assert_eq!(label(&profile, &profile.sample[1], "tid"), None);
}

#[test]
fn profiles_decode_gzipped_or_plain() {
    use std::io::Write;
    let profile = inline_profile();
    let plain = profile.encode_to_vec();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&plain).expect("gzip into a Vec");
    let gzipped = gzip.finish().expect("gzip into a Vec");
    assert_eq!(decode_profile(&gzipped), profile);
    assert_eq!(decode_profile(&plain), profile);
}
