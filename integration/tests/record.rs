//! `rprof-agent record`, end to end: real programs, real profiles, real figures.
//!
//! Each test starts a program from `programs/` whose source states the claim it exercises,
//! records it with the release agent and checks the profile. The tests hold the CPU lock
//! throughout: every program spins, and a two-core machine with several spinning at once
//! would starve the agent.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rprof_integration::elf::{build_id, section_names, symbol_address};
use rprof_integration::{
    agent_bin, assert_go_stacks_rooted, assert_leaf_ratio, assert_one_line_error, assert_share,
    assert_success, build_c, comment_starting, exclusive, go_tool_pprof, is_running, label,
    leaf_split, num_label, of_process, passes_through, programs, read_profile, record, record_full,
    record_full_env, require_kernel_sampling_refused, run_agent, share_of, stack_split, string,
    top_leaves, total_samples, Measuring, Recording, Running, Stacks, Target, AS_UNPRIVILEGED,
};
use rprof_proto::pb::Profile;

/// Sampling rate of the recordings: 2.5 × the default, for tighter ratios in a few seconds.
const HZ: u32 = 250;
/// HZ as `record` arguments (the shape test's period assertion catches a mismatch).
const HZ_ARG: &[&str] = &["-F", "250"];
/// The sampling period that goes with HZ, in nanoseconds.
const PERIOD: i64 = 1_000_000_000 / HZ as i64;

/// A recording of a live target, with the CPU time the target used meanwhile.
struct Measured {
    recording: Recording,
    cpu: Duration,
}

impl Measured {
    fn record(target: &Target, seconds: u32) -> Measured {
        let before = target.cpu_time();
        let recording = record_full(target.pid(), seconds, HZ_ARG);
        let cpu = target.cpu_time().saturating_sub(before);
        Measured { recording, cpu }
    }

    fn profile(&self) -> &Profile {
        &self.recording.profile
    }

    /// Asserts that the profile holds at least half the samples the target's CPU time is worth
    /// at HZ. The time is measured over the agent's whole run, start-up included, hence the
    /// leeway; far fewer samples means the agent lost them.
    fn assert_sample_floor(&self) {
        let expected = self.cpu.as_secs_f64() * f64::from(HZ);
        let total = total_samples(self.profile());
        println!("{total} samples for {:?} of target CPU time", self.cpu);
        assert!(
            total as f64 >= expected / 2.0,
            "{total} samples for {:?} of target CPU time at {HZ} Hz, expected about {expected:.0}\n{}",
            self.cpu,
            top_leaves(self.profile(), 10)
        );
    }
}

/// Asserts that at least `minimum` of all samples have `function` in their stack.
fn assert_reach(profile: &Profile, function: &str, minimum: f64) {
    let stacks = Stacks::new(profile);
    let reach = stacks.fraction(|_, _| true, |frames| frames.contains(&function));
    println!("reaching {function}: {reach}");
    assert!(
        reach.ratio() >= minimum,
        "{reach} of the samples reach {function}, expected ≥ {:.0} %\n{}",
        100.0 * minimum,
        top_leaves(profile, 10)
    );
}

fn function_names(profile: &Profile) -> Vec<&str> {
    profile
        .function
        .iter()
        .map(|f| string(profile, f.name))
        .collect()
}

fn thread_label_count(profile: &Profile, thread: &str) -> i64 {
    profile
        .sample
        .iter()
        .filter(|sample| label(profile, sample, "thread") == Some(thread))
        .map(|sample| sample.value[0])
        .sum()
}

/// One 5 s recording of leaf_ratio, shared by the tests that read it in different ways.
struct LeafRatioRun {
    measured: Measured,
    seconds: u32,
    pid: u32,
    comm: String,
    binary: PathBuf,
}

fn leaf_ratio_run() -> &'static LeafRatioRun {
    static RUN: OnceLock<LeafRatioRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let binary = programs::leaf_ratio();
        let target = Target::start(&binary);
        let comm = fs::read_to_string(format!("/proc/{}/comm", target.pid()))
            .expect("read the target's comm")
            .trim_end()
            .to_owned();
        let seconds = 5;
        LeafRatioRun {
            measured: Measured::record(&target, seconds),
            seconds,
            pid: target.pid(),
            comm,
            binary,
        }
    })
}

/// Writes the shared recording's bytes, exactly as the agent wrote them, into `dir`.
fn leaf_ratio_file(dir: &Path) -> PathBuf {
    let path = dir.join("cpu.pb.gz");
    fs::write(&path, &leaf_ratio_run().measured.recording.bytes).expect("write the profile");
    path
}

#[test]
fn leaf_ratio_time_goes_3_to_1_to_identical_leaves() {
    let _cpu = exclusive();
    let run = leaf_ratio_run();
    let profile = &run.measured.recording.profile;
    run.measured.assert_sample_floor();
    assert_leaf_ratio(profile, "leaf_a", "leaf_b", 0.75, 0.05);
}

#[test]
fn leaf_ratio_stacks_reach_main_without_frame_pointers() {
    let _cpu = exclusive();
    assert_reach(&leaf_ratio_run().measured.recording.profile, "main", 0.95);
}

#[test]
fn leaf_ratio_profile_has_the_shape_of_a_go_cpu_profile() {
    let _cpu = exclusive();
    let run = leaf_ratio_run();
    let profile = &run.measured.recording.profile;
    let value_type =
        |t: &rprof_proto::pb::ValueType| (string(profile, t.r#type), string(profile, t.unit));
    let types: Vec<_> = profile.sample_type.iter().map(value_type).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(
        profile.period_type.as_ref().map(value_type),
        Some(("cpu", "nanoseconds"))
    );
    assert_eq!(profile.period, PERIOD);
    assert_eq!(profile.string_table.first().map(String::as_str), Some(""));
    for sample in &profile.sample {
        assert_eq!(sample.value.len(), 2, "{sample:?}");
        assert!(sample.value[0] >= 1, "{sample:?}");
        assert_eq!(sample.value[1], sample.value[0] * PERIOD, "{sample:?}");
    }
    assert_recording_times(&run.measured.recording, run.seconds);
}

/// time_nanos is when the recording started, duration_nanos how long it lasted.
fn assert_recording_times(recording: &Recording, seconds: u32) {
    // Leeway for an agent that derives wall-clock time from another clock.
    const SLACK: Duration = Duration::from_secs(1);
    let profile = &recording.profile;
    let started = recording
        .started_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is past 1970");
    let time = Duration::from_nanos(u64::try_from(profile.time_nanos).unwrap_or(0));
    assert!(
        time + SLACK >= started && time <= started + recording.elapsed + SLACK,
        "time_nanos {time:?} is not within the agent's run, which started at {started:?} \
         and took {:?}",
        recording.elapsed
    );
    let duration = Duration::from_nanos(u64::try_from(profile.duration_nanos).unwrap_or(0));
    let requested = Duration::from_secs(seconds.into());
    assert!(
        duration >= requested.mul_f64(0.9) && duration <= recording.elapsed,
        "duration_nanos {duration:?} for a {requested:?} recording that took {:?}",
        recording.elapsed
    );
}

#[test]
fn leaf_ratio_main_mapping_is_the_program_with_its_build_id() {
    let _cpu = exclusive();
    let run = leaf_ratio_run();
    let profile = &run.measured.recording.profile;
    let main = profile.mapping.first().expect("the profile has mappings");
    let binary = fs::canonicalize(&run.binary).expect("canonicalize the program path");
    assert_eq!(Path::new(string(profile, main.filename)), binary);
    let expected = build_id(&binary).expect("gcc gave the program a build id");
    assert_eq!(
        string(profile, main.build_id).to_ascii_lowercase(),
        expected
    );
    assert!(
        main.has_functions,
        "mapping[0] does not claim functions: {main:?}"
    );
    assert!(
        main.memory_start < main.memory_limit,
        "mapping[0] has an empty range: {main:?}"
    );
}

#[test]
fn leaf_ratio_ids_are_unique_and_references_resolve() {
    let _cpu = exclusive();
    let profile = &leaf_ratio_run().measured.recording.profile;
    let unique = |ids: Vec<u64>| {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() == ids.len() && !ids.contains(&0)
    };
    assert!(
        unique(profile.mapping.iter().map(|m| m.id).collect()),
        "mapping ids"
    );
    assert!(
        unique(profile.location.iter().map(|l| l.id).collect()),
        "location ids"
    );
    assert!(
        unique(profile.function.iter().map(|f| f.id).collect()),
        "function ids"
    );
    let mapping_ids: Vec<u64> = profile.mapping.iter().map(|m| m.id).collect();
    // Stacks::frames panics on a dangling location or function id.
    let stacks = Stacks::new(profile);
    for location in &profile.location {
        // No mapping (id 0, as pprof allows) only for what no file holds: the kernel's frame
        // on top of a sample taken in a syscall, pseudo frames like [lost samples].
        let names = stacks.location_frames(location);
        assert!(
            mapping_ids.contains(&location.mapping_id)
                || (location.mapping_id == 0 && names.iter().all(|n| n.starts_with('['))),
            "location {} ({names:?}) names mapping {}",
            location.id,
            location.mapping_id
        );
    }
    for sample in &profile.sample {
        assert!(
            !stacks.frames(sample).is_empty(),
            "a sample without a stack: {sample:?}"
        );
    }
}

#[test]
fn leaf_ratio_samples_carry_thread_and_tid_labels() {
    let _cpu = exclusive();
    let run = leaf_ratio_run();
    let profile = &run.measured.recording.profile;
    let pid = run.pid.to_string();
    for sample in &profile.sample {
        // A single-threaded program: its one thread is the process, with the program's comm.
        assert_eq!(
            label(profile, sample, "thread"),
            Some(run.comm.as_str()),
            "{sample:?}"
        );
        assert_eq!(
            label(profile, sample, "tid"),
            Some(pid.as_str()),
            "{sample:?}"
        );
    }
}

#[test]
fn record_prints_a_summary_with_the_top_functions() {
    let _cpu = exclusive();
    let stdout = &leaf_ratio_run().measured.recording.stdout;
    for function in ["leaf_a", "leaf_b"] {
        assert!(
            stdout.contains(function),
            "stdout lacks {function}:\n{stdout}"
        );
    }
    let lines = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count();
    assert!(lines >= 3, "expected a summary line and a table:\n{stdout}");
}

#[test]
fn top_command_reads_the_profile() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let file = leaf_ratio_file(dir.path());
    let top = run_agent(
        &[OsString::from("top"), file.clone().into()],
        Duration::from_secs(30),
    );
    assert_success(&top, "rprof-agent top");
    assert!(
        top.stdout.contains("leaf_a"),
        "no leaf_a in:\n{}",
        top.stdout
    );

    // Several files: one table each, under its file's name.
    let copy = dir.path().join("again.pb.gz");
    fs::copy(&file, &copy).expect("copy the profile");
    let top = run_agent(
        &[
            OsString::from("top"),
            file.clone().into(),
            copy.clone().into(),
        ],
        Duration::from_secs(30),
    );
    assert_success(&top, "rprof-agent top with two files");
    for path in [&file, &copy] {
        let header = format!("==> {} <==", path.display());
        assert!(
            top.stdout.contains(&header),
            "no {header} in:\n{}",
            top.stdout
        );
    }
    assert_eq!(
        top.stdout.matches("leaf_a").count(),
        2,
        "not one table each:\n{}",
        top.stdout
    );
}

#[test]
fn go_tool_pprof_reads_the_profile_without_resymbolizing() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let file = leaf_ratio_file(dir.path());

    let raw = go_tool_pprof(&["-raw".as_ref(), file.as_os_str()]);
    assert_success(&raw, "go tool pprof -raw");
    // The profile's comments, if any, come first; then the header Go's own profiles have.
    let header: Vec<&str> = raw
        .stdout
        .lines()
        .skip_while(|line| line.starts_with("Comment:"))
        .take(2)
        .collect();
    let period = format!("Period: {PERIOD}");
    assert_eq!(
        header,
        ["PeriodType: cpu nanoseconds", &period],
        "{}",
        raw.stdout
    );
    assert!(
        raw.stdout.contains("samples/count cpu/nanoseconds"),
        "{}",
        raw.stdout
    );

    let top = go_tool_pprof(&["-top".as_ref(), file.as_os_str()]);
    assert_success(&top, "go tool pprof -top");
    assert!(
        top.stdout.contains("leaf_a"),
        "no leaf_a in:\n{}",
        top.stdout
    );
    // pprof only tries to symbolize (locally, or by POSTing to the profile's source) mappings
    // that do not say they have functions: it must find nothing to do.
    for output in [&raw, &top] {
        let stderr = output.stderr.to_lowercase();
        assert!(
            !stderr.contains("symboliz") && !stderr.contains("http"),
            "pprof tried to symbolize:\n{}",
            output.stderr
        );
    }
}

#[test]
fn flamegraph_format_writes_an_svg() {
    let _cpu = exclusive();
    let target = Target::start(&programs::leaf_ratio());
    let dir = tempfile::tempdir().expect("create a directory");
    let svg_path = dir.path().join("cpu.svg");
    let pid = target.pid().to_string();
    let flags = [
        "record",
        "--pid",
        &pid,
        "--seconds",
        "2",
        "--format",
        "flamegraph",
        "-o",
    ];
    let mut args = Vec::from(flags.map(OsString::from));
    args.push(svg_path.into_os_string());
    let finished = run_agent(&args, Duration::from_secs(60));
    assert_success(&finished, "rprof-agent record --format flamegraph");
    let svg = fs::read_to_string(dir.path().join("cpu.svg")).expect("read the SVG");
    assert!(
        svg.contains("<svg"),
        "not an SVG:\n{}",
        &svg[..svg.len().min(500)]
    );
    assert!(svg.contains("leaf_a"), "the flame graph has no leaf_a");
}

/// 4 s of `deep_stack DEPTH`, its thread recursing DEPTH frames of 272 bytes.
fn record_deep_stack(depth: usize) -> Measured {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::deep_stack(), &[depth.to_string()]);
    let measured = Measured::record(&target, 4);
    measured.assert_sample_floor();
    measured
}

#[test]
fn deep_stacks_unwind_to_the_thread_root() {
    const DEPTH: usize = 94;
    /// What a thread's outermost frames may be called: its start routine, or glibc's.
    const THREAD_ROOTS: &[&str] = &["deep_thread", "start_thread", "clone3", "__clone3"];
    let measured = record_deep_stack(DEPTH);
    let profile = measured.profile();

    // The deep thread is the only one running (main sleeps in pthread_join), and all of its
    // time is spent under deep_root: every sample, wherever in the recursion it lands, must
    // unwind to the root. The deep_leaf samples are the ones with the full 25 KiB below them.
    let stacks = Stacks::new(profile);
    let in_deep_leaf = |frames: &[&str], _: &_| frames.contains(&"deep_leaf");
    let deep = stacks.fraction(in_deep_leaf, |_| true);
    assert!(
        deep.total >= 100,
        "only {deep} samples in deep_leaf\n{}",
        top_leaves(profile, 10)
    );
    let rooted = |frames: &[&str]| {
        frames.contains(&"deep_root") && frames.iter().any(|f| THREAD_ROOTS.contains(f))
    };
    for (among, fraction) in [
        ("deep_leaf", stacks.fraction(in_deep_leaf, rooted)),
        ("all", stacks.fraction(|_, _| true, rooted)),
    ] {
        println!("{among} samples rooted: {fraction}");
        assert!(
            fraction.ratio() >= 0.99,
            "{fraction} of the {among} samples reach deep_root and the thread's root\n{}",
            top_leaves(profile, 10)
        );
    }
    // Complete, not just rooted: every level of the recursion is there (DEPTH..=0).
    let complete = stacks.fraction(in_deep_leaf, |frames| {
        frames.iter().filter(|f| **f == "descend").count() == DEPTH + 1
    });
    println!("deep_leaf samples with all descend frames: {complete}");
    assert!(
        complete.ratio() >= 0.99,
        "{complete} of the deep_leaf samples show all {} descend frames",
        DEPTH + 1
    );
}

/// A stack deeper than any sample can carry (~64 KiB, the kernel's record limit): 400 frames
/// of 272 bytes, 106 KiB. The frames past the copy are read from the thread's live stack,
/// where the copy's last bytes prove they are the same (agent/src/unwind/live.rs).
#[test]
fn stacks_deeper_than_the_copy_are_completed_from_live_memory() {
    const DEPTH: usize = 400;
    let measured = record_deep_stack(DEPTH);
    let profile = measured.profile();
    let stacks = Stacks::new(profile);
    let in_deep_leaf = |frames: &[&str], _: &_| frames.contains(&"deep_leaf");
    let complete = stacks.fraction(in_deep_leaf, |frames| {
        frames.iter().filter(|f| **f == "descend").count() == DEPTH + 1
            && frames.contains(&"deep_root")
            && frames.last().is_some_and(|f| f.contains("clone"))
    });
    println!(
        "deep_leaf samples with all {} descend frames, down to clone: {complete}",
        DEPTH + 1
    );
    assert!(
        complete.total >= 100,
        "only {complete} samples in deep_leaf"
    );
    assert!(
        complete.ratio() >= 0.95,
        "{complete} of the deep_leaf samples are complete\n{}",
        top_leaves(profile, 10)
    );
    let completed: u64 = profile
        .comment
        .iter()
        .map(|&c| string(profile, c))
        .find_map(|c| c.rsplit_once("(its frames at the copy's end unchanged): "))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("no completion count among the comments"));
    assert!(
        completed as i64 >= complete.hits,
        "{completed} stacks completed, {complete} complete deep_leaf samples"
    );
}

/// The thread returns from its deep path and goes down a shallow, different one, over and over
/// (integration/programs/deep_paths.c): when a deep sample is unwound, the outer part of the
/// stack may hold the other path's frames over stale ones. A completed stack must never mix the
/// two paths (agent/src/unwind/call_site.rs); it is truncated instead.
#[test]
fn stacks_are_never_completed_from_frames_of_another_call_path() {
    const DEPTH: usize = 400;
    let _cpu = exclusive();
    let target = Target::spawn(&programs::deep_paths(), &[DEPTH.to_string()]);
    let measured = Measured::record(&target, 4);
    measured.assert_sample_floor();
    let profile = measured.profile();
    let stacks = Stacks::new(profile);
    let count = |frames: &[&str], name: &str| frames.iter().filter(|f| **f == name).count();
    let mixed = stacks.fraction(
        |_, _| true,
        |frames| count(frames, "descend_a") > 0 && count(frames, "descend_b") > 0,
    );
    println!("samples mixing the two paths: {mixed}");
    assert_eq!(
        mixed.hits,
        0,
        "stitched stacks: {mixed}\n{}",
        top_leaves(profile, 10)
    );
    // Deep samples are whole (every level, down to the thread's root) or cut, never partly
    // made up; the shallow path fits its copy.
    let in_leaf_a = |frames: &[&str], _: &_| frames.contains(&"leaf_a");
    let whole_a = stacks.fraction(in_leaf_a, |frames| {
        count(frames, "descend_a") == DEPTH + 1 && frames.contains(&"paths_root")
    });
    let cut_a = stacks.fraction(in_leaf_a, |frames| frames.contains(&"[truncated stack]"));
    println!("leaf_a samples: {whole_a} whole, {cut_a} truncated");
    assert!(
        whole_a.total >= 50,
        "only {whole_a} samples in leaf_a\n{}",
        top_leaves(profile, 10)
    );
    assert_eq!(
        whole_a.hits + cut_a.hits,
        whole_a.total,
        "leaf_a samples neither whole nor truncated\n{}",
        top_leaves(profile, 10)
    );
    let in_leaf_b = |frames: &[&str], _: &_| frames.contains(&"leaf_b");
    let whole_b = stacks.fraction(in_leaf_b, |frames| {
        count(frames, "descend_b") == DEPTH / 4 + 1 && frames.contains(&"paths_root")
    });
    println!("leaf_b samples whole: {whole_b}");
    assert!(whole_b.ratio() >= 0.99, "{whole_b} leaf_b samples whole");
}

#[test]
fn inlined_cpp_method_is_an_inline_frame_with_a_demangled_name() {
    const STEP: &str = "rprof_test::Hot::step(unsigned long)";
    const RUN_HOT: &str = "rprof_test::run_hot(unsigned long)";
    let _cpu = exclusive();
    let target = Target::start(&programs::inline_cpp());
    let measured = Measured::record(&target, 3);
    measured.assert_sample_floor();
    let profile = measured.profile();

    let stacks = Stacks::new(profile);
    let inlined = profile.location.iter().find(|location| {
        let frames = stacks.location_frames(location);
        frames.len() >= 2 && frames.first() == Some(&STEP) && frames.last() == Some(&RUN_HOT)
    });
    let inlined = inlined.unwrap_or_else(|| {
        panic!(
            "no location has {STEP} inlined into {RUN_HOT}; functions: {:?}",
            function_names(profile)
        )
    });
    let step = stacks.function(inlined.line[0].function_id);
    let physical = inlined.line.last().expect("an inline location has lines");
    let run_hot = stacks.function(physical.function_id);
    assert_eq!(
        string(profile, step.system_name),
        "_ZN10rprof_test3Hot4stepEm"
    );
    assert_eq!(
        string(profile, run_hot.system_name),
        "_ZN10rprof_test7run_hotEm"
    );
    let share = share_of(profile, STEP);
    assert!(
        share >= 0.5,
        "{STEP} is in only {:.1} % of the stacks",
        100.0 * share
    );
    assert!(
        profile.mapping[0].has_inline_frames,
        "mapping[0] does not claim inline frames"
    );
}

#[test]
fn binary_without_dwarf_is_named_from_its_symtab() {
    let _cpu = exclusive();
    let target = Target::start(&programs::nodwarf());
    let measured = Measured::record(&target, 5);
    measured.assert_sample_floor();
    let profile = measured.profile();
    let names = function_names(profile);
    for function in ["leaf_a", "leaf_b", "main"] {
        assert!(names.contains(&function), "no {function} among {names:?}");
    }
    assert_leaf_ratio(profile, "leaf_a", "leaf_b", 0.75, 0.05);
    assert_reach(profile, "main", 0.95);
}

#[test]
fn stripped_code_is_named_per_function_by_module_and_start() {
    let _cpu = exclusive();
    let stripped = programs::nodwarf_stripped();
    assert!(
        !section_names(&stripped).iter().any(|s| s == ".symtab"),
        "premise: the stripped build has no .symtab"
    );
    // Where the functions start, read from the unstripped build of the same code.
    let unstripped = programs::nodwarf();
    let start = |name| {
        symbol_address(&unstripped, name)
            .unwrap_or_else(|| panic!("no {name} in {}", unstripped.display()))
    };
    let [leaf_a, leaf_b, main] =
        ["leaf_a", "leaf_b", "main"].map(|f| format!("nodwarf+{:#x}", start(f)));

    let target = Target::start(&stripped);
    let measured = Measured::record(&target, 5);
    measured.assert_sample_floor();
    let profile = measured.profile();
    // One row per function: the leaves' samples gather under their functions' starts.
    assert_leaf_ratio(profile, &leaf_a, &leaf_b, 0.75, 0.05);
    assert_reach(profile, &main, 0.95);

    // The thread dump names the same frames, and gives the pc module-relative too.
    let pid = target.pid().to_string();
    let dump = run_agent(&["threads", "--pid", &pid], Duration::from_secs(30));
    assert_success(&dump, "threads of the stripped program");
    assert!(
        dump.stdout.lines().any(|line| line == main),
        "no frame named {main} in:\n{}",
        dump.stdout
    );
    assert!(
        dump.stdout.contains("/nodwarf+0x"),
        "no module-relative pc in:\n{}",
        dump.stdout
    );
}

/// Removes a JIT test program's perf map, which a SIGKILLed program cannot remove itself.
struct PerfMapFile(PathBuf);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn jit_code_is_named_from_the_perf_map_and_unwound_through() {
    let _cpu = exclusive();
    let target = Target::start(&build_c("jit_code", &["-O2", "-g", "-fomit-frame-pointer"]));
    let map = PerfMapFile(PathBuf::from(format!("/tmp/perf-{}.map", target.pid())));
    assert!(map.0.exists(), "jit_code wrote no {}", map.0.display());
    let measured = Measured::record(&target, 5);
    measured.assert_sample_floor();
    let profile = measured.profile();
    assert_leaf_ratio(profile, "jit_hot_loop", "jit_cold_loop", 0.75, 0.05);
    // Through the JIT frame (frame-pointer rule, no unwind tables) into its C caller.
    let stacks = Stacks::new(profile);
    let through = stacks.fraction(
        |frames, _| frames.first() == Some(&"jit_hot_loop"),
        |frames| frames.get(1) == Some(&"run_hot") && frames.contains(&"main"),
    );
    println!("jit_hot_loop samples under run_hot and main: {through}");
    assert!(
        through.ratio() >= 0.95,
        "{through} of jit_hot_loop samples unwind to run_hot and main\n{}",
        top_leaves(profile, 10)
    );

    // The thread dump names the JIT frame too.
    let dump = run_agent(
        &[
            "threads",
            "--pid",
            &target.pid().to_string(),
            "--format",
            "json",
        ],
        Duration::from_secs(30),
    );
    assert_success(&dump, "rprof-agent threads on jit_code");
    assert!(
        dump.stdout.contains("jit_hot_loop") || dump.stdout.contains("jit_cold_loop"),
        "the thread dump names no JIT frame:\n{}",
        dump.stdout
    );
}

#[test]
fn jit_code_of_a_target_that_exited_is_still_named() {
    let _cpu = exclusive();
    let program = build_c("jit_code", &["-O2", "-g", "-fomit-frame-pointer"]);
    // Exits by itself 3 s in, leaving its perf map, while the recording asks for 10 s.
    let target = Target::spawn(&program, &["3"]);
    let _map = PerfMapFile(PathBuf::from(format!("/tmp/perf-{}.map", target.pid())));
    let (profile, stdout, _) = record(target.pid(), 10, HZ_ARG);
    assert!(stdout.contains("target exited"), "{stdout}");
    let split = leaf_split(&profile, "jit_hot_loop", "jit_cold_loop");
    println!("{split} after the target exited");
    assert!(
        split.total >= 200,
        "JIT frames unnamed once the target exited: only {split}\n{}",
        top_leaves(&profile, 10)
    );
}

#[test]
fn threads_started_during_the_recording_are_sampled() {
    let _cpu = exclusive();
    // The late threads start 2 s after ready, well after the agent has attached.
    let target = Target::spawn(&programs::late_threads(), &["2"]);
    let tasks = fs::read_dir(format!("/proc/{}/task", target.pid())).expect("list threads");
    assert_eq!(tasks.count(), 1, "late_threads started its threads early");
    let measured = Measured::record(&target, 5);
    measured.assert_sample_floor();
    let profile = measured.profile();

    let stacks = Stacks::new(profile);
    let pid = target.pid().to_string();
    let mut tids = Vec::new();
    for thread in ["late-1", "late-2"] {
        let samples = thread_label_count(profile, thread);
        // Each runs ~3 s at up to one core: hundreds of samples; 20 proves it was followed.
        assert!(
            samples >= 20,
            "{samples} samples for thread {thread}\n{}",
            top_leaves(profile, 10)
        );
        let of_thread = |_: &[&str], sample: &_| label(profile, sample, "thread") == Some(thread);
        let working = stacks.fraction(of_thread, |frames| frames.contains(&"late_work"));
        assert!(
            working.ratio() >= 0.95,
            "{working} of {thread}'s samples are in late_work"
        );
        let tid = profile
            .sample
            .iter()
            .find(|sample| label(profile, sample, "thread") == Some(thread))
            .and_then(|sample| label(profile, sample, "tid"))
            .expect("a tid label");
        assert!(
            tid.parse::<u32>().is_ok() && tid != pid,
            "{thread} has tid {tid:?}"
        );
        tids.push(tid);
    }
    assert_ne!(tids[0], tids[1], "late-1 and late-2 share a tid");
}

/// A demangled name that still carries a legacy (`::h0123…`) or v0 (`[0123…]`) hash.
fn has_rust_hash(name: &str) -> bool {
    let hex_run = |s: &str| s.chars().take_while(char::is_ascii_hexdigit).count();
    let legacy = name
        .match_indices("::h")
        .any(|(at, _)| hex_run(&name[at + 3..]) == 16);
    let v0 = name.match_indices('[').any(|(at, _)| {
        name[at + 1..]
            .find(']')
            .is_some_and(|end| end > 0 && hex_run(&name[at + 1..]) == end)
    });
    legacy || v0
}

#[test]
fn rust_functions_are_demangled_without_hash_and_timed_right() {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::rust_target(), &["2"]);
    let measured = Measured::record(&target, 4);
    measured.assert_sample_floor();
    let profile = measured.profile();

    let names = function_names(profile);
    for function in ["rust_target::hot_a", "rust_target::hot_b"] {
        assert!(names.contains(&function), "no {function} among {names:?}");
    }
    let mangled: Vec<&&str> = names
        .iter()
        .filter(|name| name.starts_with("_ZN") || name.starts_with("_R") || has_rust_hash(name))
        .collect();
    assert!(
        mangled.is_empty(),
        "names left mangled or hashed: {mangled:?}"
    );
    // The leaf line is an inlined std helper (rotate_left, wrapping_mul): hot_a and hot_b are
    // the physical functions under it, so they are compared wherever they are on the stack.
    let split = stack_split(profile, "rust_target::hot_a", "rust_target::hot_b");
    println!("hot_a / (hot_a + hot_b) = {split}");
    assert!(
        split.total >= 300,
        "only {split} samples in hot_a or hot_b\n{}",
        top_leaves(profile, 10)
    );
    assert!(
        (split.ratio() - 0.75).abs() <= 0.05,
        "hot_a share {split}, expected 0.75 ± 0.05"
    );
    for thread in ["worker-0", "worker-1"] {
        assert!(
            thread_label_count(profile, thread) > 0,
            "no samples for thread {thread}"
        );
    }
}

#[test]
fn go_binary_is_unwound_from_its_debug_frame() {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::go_target(), &["2"]);
    let measured = Measured::record(&target, 4);
    measured.assert_sample_floor();
    let profile = measured.profile();
    let names = function_names(profile);
    for function in ["main.hotA", "main.hotB"] {
        assert!(names.contains(&function), "no {function} among {names:?}");
    }
    // ±8: the two loops differ in their constants and, unlike the C leaves, cannot be aligned
    // alike; on this AMD host the split has ranged 68-82 % between loaded runs.
    assert_leaf_ratio(profile, "main.hotA", "main.hotB", 0.75, 0.08);
}

/// Linked with `-ldflags=-s -w` (no `.symtab`, no DWARF), as `go run` and most images build:
/// the functions are named from Go's own `.gopclntab`.
#[test]
fn stripped_go_binary_is_named_from_its_pclntab() {
    let _cpu = exclusive();
    let binary = rprof_integration::build_go("go_target", &["-ldflags=-s -w"]);
    let sections = section_names(&binary);
    assert!(
        !sections
            .iter()
            .any(|s| s == ".symtab" || s == ".debug_info"),
        "premise: a stripped Go binary, not {sections:?}"
    );
    assert!(sections.iter().any(|s| s == ".gopclntab"), "{sections:?}");
    let target = Target::spawn(&binary, &["2"]);
    let measured = Measured::record(&target, 4);
    measured.assert_sample_floor();
    let profile = measured.profile();
    let names = function_names(profile);
    for function in ["main.hotA", "main.hotB", "runtime.goexit"] {
        assert!(names.contains(&function), "no {function} among {names:?}");
    }
    assert_leaf_ratio(profile, "main.hotA", "main.hotB", 0.75, 0.08);
}

#[test]
fn go_server_stacks_reach_their_goroutine_or_thread_root_as_in_go_s_own_profile() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let go_profile = dir.path().join("go-cpu.pb.gz");
    // Go's own CPU profile of the same seconds, written by the server itself.
    let args = [go_profile.clone().into_os_string(), OsString::from("8")];
    let target = Target::spawn(&programs::go_server(), &args);
    let alongside_go = Measured::record(&target, 8);
    assert_agrees_with_go(alongside_go.profile(), &wait_for_file(&go_profile));
    // Samples on Go's system stack (systemstack, morestack) and in vdso calls are followed
    // back to their goroutine.
    let followed = comment_number(alongside_go.profile(), "goroutine stacks: ");
    println!("followed back to their goroutine: {followed}");
    assert!(followed > 0, "no stack was followed back to its goroutine");
    // Roots, while Go's own profiler runs: its SIGPROF handlers run on the signal stack and
    // are followed through the signal frame into the code they interrupted.
    let profile = alongside_go.profile();
    let stacks = Stacks::new(profile);
    // The restorer is glibc's in a cgo program (this one: net), else Go's own.
    let restorer =
        |frame: &&str| *frame == "__restore_rt" || frame.starts_with("runtime.sigreturn");
    let handlers = stacks.fraction(
        |frames, _| frames.iter().any(|f| f.starts_with("runtime.sigtramp")),
        |frames| frames.iter().any(restorer) && frames.last() != Some(&"__restore_rt"),
    );
    println!("Go's signal handler stacks on past the signal frame: {handlers}");
    assert_eq!(
        handlers.hits, handlers.total,
        "handler stacks end at the signal frame"
    );
    assert_go_stacks_rooted(profile, 400);
    // And once it stopped.
    let measured = Measured::record(&target, 5);
    assert_go_stacks_rooted(measured.profile(), 400);
}

#[test]
fn go_stacks_are_followed_by_the_program_older_kernels_take() {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::go_server(), &[] as &[&str]);
    // The program without the search for signal frames, which needs Linux 5.17.
    let env = [("RPROF_GO_STACKS", "nosignals")];
    let recording = record_full_env(target.pid(), 3, HZ_ARG, &env);
    let prefix = "goroutine stacks: ";
    let comment = comment_starting(&recording.profile, prefix).expect("a goroutine comment");
    println!("{comment}");
    assert!(
        comment.contains("signal handlers not followed"),
        "{comment}"
    );
    assert!(comment_number(&recording.profile, prefix) > 0, "{comment}");
}

#[test]
fn go_server_without_dwarf_or_symbols_is_followed_from_its_runtime_s_code() {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::go_server_stripped(), &[] as &[&str]);
    let measured = Measured::record(&target, 5);
    let profile = measured.profile();
    // The offsets come from the runtime's machine code, the functions from .gopclntab.
    let followed = comment_number(profile, "goroutine stacks: ");
    println!("followed back to their goroutine: {followed}");
    assert!(followed > 0, "no stack was followed back to its goroutine");
    assert_go_stacks_rooted(profile, 400);
}

#[test]
fn go_calling_c_and_c_calling_go_unwind_to_the_goroutine_root() {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::go_cgo(), &[] as &[&str]);
    let measured = Measured::record(&target, 6);
    let profile = measured.profile();
    // C code called through cgo runs on g0, where R14 is not g: followed from g in TLS.
    let followed = comment_number(profile, "goroutine stacks: ");
    println!("followed back to their goroutine: {followed}");
    assert!(followed > 0, "no stack was followed back to its goroutine");
    assert_go_stacks_rooted(profile, 400);
    let split = stack_split(profile, "c_hot_a", "c_hot_b");
    assert_share(split, "c_hot_a / (c_hot_a + c_hot_b)", 0.75, 0.05, profile);
    let stacks = Stacks::new(profile);
    // Each C leaf under the Go function that called it, through cgo's own frames, down to
    // the worker goroutine's root.
    for (leaf, caller) in [("c_hot_a", "main.callA"), ("c_hot_b", "main.callB")] {
        let path = [
            leaf,
            "runtime.asmcgocall",
            "runtime.cgocall",
            caller,
            "main.worker",
            "runtime.goexit",
        ];
        let through = stacks.fraction(
            |frames, _| frames.contains(&leaf),
            |frames| passes_through(frames, &path),
        );
        println!("{leaf} stacks through {path:?}: {through}");
        assert_eq!(through.hits, through.total, "{leaf} stacks off {path:?}");
    }
    // The thread C created calls Go: its Go frames, on the goroutine Go lends it (an extra M),
    // end where Go's own traceback ends them (its C callers are on the thread's own stack).
    let path = [
        "main.goSpin",
        "runtime.cgocallbackg",
        "runtime.cgocallback",
        "runtime.goexit",
    ];
    let callback = stacks.fraction(
        |frames, sample| {
            frames.contains(&"main.goSpin") && label(profile, sample, "thread") == Some("c-caller")
        },
        |frames| passes_through(frames, &path),
    );
    println!("c-caller's main.goSpin stacks through {path:?}: {callback}");
    assert!(
        callback.total >= 100,
        "too few callback samples: {callback}"
    );
    assert_eq!(
        callback.hits, callback.total,
        "callback stacks off {path:?}"
    );
}

#[test]
fn signal_handler_stacks_go_on_through_the_signal_frame_into_the_interrupted_code() {
    let _cpu = exclusive();
    let target = Target::spawn(&programs::signal_frames(), &[] as &[&str]);
    let measured = Measured::record(&target, 5);
    let profile = measured.profile();
    let stacks = Stacks::new(profile);
    // Both sides sampled: about a quarter of the time in the handler.
    let in_handler = stacks.fraction(|_, _| true, |frames| frames.contains(&"handler_work"));
    println!("in the handler: {in_handler}");
    let outside = in_handler.total - in_handler.hits;
    assert!(
        in_handler.hits >= 100 && outside >= 100,
        "{in_handler} of the samples in the handler\n{}",
        top_leaves(profile, 10)
    );
    let path = [
        "handler_work",
        "on_signal",
        "__restore_rt",
        "main_work",
        "main",
        "_start",
    ];
    let through = stacks.fraction(
        |frames, _| frames.contains(&"handler_work"),
        |frames| passes_through(frames, &path) && frames.last() == Some(&"_start"),
    );
    println!("handler stacks through {path:?}: {through}");
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if frames.contains(&"handler_work") && !passes_through(&frames, &path) {
            println!("  off the path: {}", frames.join(" < "));
        }
    }
    assert!(
        through.ratio() >= 0.99,
        "only {through} of the handler's stacks reach main through the signal frame"
    );
}

/// Every function that Go's own profile puts in at least 5 % of its samples is in as large a
/// share of ours (by stack: cumulative), and every function Go finds at least 3 % of its
/// samples in (flat) is the leaf of as large a share of ours: within sampling noise, 4 standard
/// deviations of the difference of two independent shares. Our leaf is the first Go function
/// of the stack: Go names time in a system call or the vdso after the Go function that made
/// the call, the agent after the call (`[syscall write]`, `clock_gettime`).
fn assert_agrees_with_go(ours: &Profile, go: &Profile) {
    let go_stacks = Stacks::new(go);
    let mut functions: Vec<&str> = go
        .sample
        .iter()
        .flat_map(|sample| go_stacks.frames(sample))
        .collect();
    functions.sort_unstable();
    functions.dedup();
    let (n_go, n_ours) = (total_samples(go) as f64, total_samples(ours) as f64);
    let ours_stacks = Stacks::new(ours);
    let go_leaf = |frames: &[&str], function: &str| frames.first() == Some(&function);
    let is_go_function = |frame: &str| !frame.starts_with('[') && frame.contains('.');
    let our_leaf = |frames: &[&str], function: &str| {
        frames.iter().find(|frame| is_go_function(frame)) == Some(&function)
    };
    let mut compared = 0;
    for function in functions {
        let cumulative = (share_of(go, function), share_of(ours, function));
        let flat = (
            go_stacks
                .fraction(|_, _| true, |frames| go_leaf(frames, function))
                .ratio(),
            ours_stacks
                .fraction(|_, _| true, |frames| our_leaf(frames, function))
                .ratio(),
        );
        for ((theirs, mine), how, floor) in [(cumulative, "by stack", 0.05), (flat, "flat", 0.03)] {
            if theirs < floor {
                continue;
            }
            let variance = |p: f64, n: f64| p * (1.0 - p) / n;
            let sigma = (variance(theirs, n_go) + variance(theirs, n_ours)).sqrt();
            println!(
                "{function} {how}: {:.1} % in Go's, {:.1} % in ours (σ {:.1})",
                100.0 * theirs,
                100.0 * mine,
                100.0 * sigma
            );
            assert!(
                (mine - theirs).abs() <= 4.0 * sigma,
                "{function} {how} is {:.1} % of Go's own samples but {:.1} % of the agent's \
                 (σ {:.1})\n{}",
                100.0 * theirs,
                100.0 * mine,
                100.0 * sigma,
                top_leaves(ours, 15)
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} shares to compare");
}

/// The number after `prefix` in the profile's comments (0 if there is none).
fn comment_number(profile: &Profile, prefix: &str) -> u64 {
    comment_starting(profile, prefix)
        .and_then(|comment| comment[prefix.len()..].split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// The profile a program writes to `path` (renamed into place when complete), once it is
/// there.
fn wait_for_file(path: &Path) -> Profile {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} was not written within 30 s",
            path.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
    read_profile(path)
}

#[test]
fn launch_mode_records_the_program_it_starts() {
    let _cpu = exclusive();
    let binary = programs::leaf_ratio();
    let dir = binary.parent().expect("the program is in a directory");
    let out = tempfile::tempdir().expect("create a directory");
    let out_file = out.path().join("cpu.pb.gz");
    let mut cmd = rprof_integration::agent_command(&["record", "--seconds", "2", "-o"]);
    // The program outlives the 2 s recording but ends on its own soon after, whatever the
    // agent does with it then.
    cmd.arg(&out_file)
        .args(["--", "./leaf_ratio", "4"])
        .current_dir(dir);
    let finished =
        Running::spawn(cmd, "rprof-agent record -- ./leaf_ratio").finish(Duration::from_secs(60));
    assert_success(&finished, "rprof-agent record -- ./leaf_ratio 4");
    let profile = read_profile(&out_file);
    assert!(
        total_samples(&profile) > 0,
        "launch mode recorded no samples"
    );
    assert!(
        share_of(&profile, "leaf_a") > 0.0,
        "no leaf_a\n{}",
        top_leaves(&profile, 10)
    );
}

/// `record -F 250 -s WINDOW EXTRA -- sh -c 'echo shell=$$; ./leaf_ratio SECONDS; true'`, run in
/// leaf_ratio's directory: a command follows leaf_ratio, so the shell forks it rather than
/// exec it in its own place. Returns what the agent printed (the shell's line included), the
/// profile and the shell's PID as the shell printed it.
fn record_through_a_shell(seconds: u32, window: u32, extra: &[&str]) -> (String, Profile, u32) {
    let binary = programs::leaf_ratio();
    let dir = binary.parent().expect("the program is in a directory");
    let out = tempfile::tempdir().expect("create a directory");
    let out_file = out.path().join("cpu.pb.gz");
    let mut cmd = rprof_integration::agent_command(&["record", "-F", "250", "--top", "2"]);
    cmd.args(["--seconds", &window.to_string()])
        .args(extra)
        .arg("-o")
        .arg(&out_file)
        .args(["--", "sh", "-c"])
        .arg(format!("echo shell=$$; ./leaf_ratio {seconds}; true"))
        .current_dir(dir);
    let what = "rprof-agent record -- sh -c './leaf_ratio; true'";
    let finished = Running::spawn(cmd, what).finish(Duration::from_secs(60));
    assert_success(&finished, what);
    let shell = finished
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("shell="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("the shell printed no PID:\n{}", finished.stdout));
    (finished.stdout, read_profile(&out_file), shell)
}

#[test]
fn launch_mode_follows_the_program_a_shell_starts() {
    let _cpu = exclusive();
    let (stdout, profile, shell) = record_through_a_shell(4, 10, &[]);
    println!("{stdout}");
    let pids: Vec<i64> = profile
        .sample
        .iter()
        .filter(|sample| label(&profile, sample, "process") == Some("leaf_ratio"))
        .filter_map(|sample| num_label(&profile, sample, "pid"))
        .collect();
    let Some(&child) = pids.first() else {
        panic!(
            "no sample of leaf_ratio, the shell's child\n{stdout}\n{}",
            top_leaves(&profile, 10)
        );
    };
    assert_ne!(
        child,
        i64::from(shell),
        "leaf_ratio labelled with the shell's PID"
    );
    for sample in &profile.sample {
        let pid = num_label(&profile, sample, "pid").expect("every sample has a pid label");
        let process = label(&profile, sample, "process").expect("and a process label");
        let expected = if pid == child { "leaf_ratio" } else { "sh" };
        assert_eq!(process, expected, "PID {pid}: {sample:?}");
        if pid == child {
            // Single-threaded: the kernel's thread id of each sample is the process's PID.
            let tid = child.to_string();
            assert_eq!(label(&profile, sample, "tid"), Some(tid.as_str()));
        }
    }
    let child = u32::try_from(child).expect("a PID");
    assert_leaf_ratio(&of_process(&profile, child), "leaf_a", "leaf_b", 0.75, 0.05);
    assert!(
        stdout.contains(&format!("PID {child} (leaf_ratio):")),
        "the summary does not name leaf_ratio:\n{stdout}"
    );
}

/// The window ends (2 s) long before what the shell started would (30 s): the shell and the
/// program it runs are both ended, not left running behind the agent.
#[test]
fn the_end_of_the_window_ends_what_the_command_started() {
    let _cpu = exclusive();
    let (stdout, profile, shell) = record_through_a_shell(30, 2, &[]);
    let child = profile
        .sample
        .iter()
        .filter(|sample| label(&profile, sample, "process") == Some("leaf_ratio"))
        .find_map(|sample| num_label(&profile, sample, "pid"))
        .unwrap_or_else(|| panic!("no sample of leaf_ratio\n{stdout}"));
    let alive = |pid: i64| u32::try_from(pid).is_ok_and(is_running);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(child) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(child),
        "leaf_ratio (PID {child}) still runs after the recording"
    );
    assert!(
        !alive(i64::from(shell)),
        "the shell (PID {shell}) still runs"
    );
}

#[test]
fn without_children_only_the_shell_is_recorded() {
    let _cpu = exclusive();
    let (stdout, profile, shell) = record_through_a_shell(2, 10, &["--no-children"]);
    println!("{stdout}");
    let leaves = share_of(&profile, "leaf_a") + share_of(&profile, "leaf_b");
    assert_eq!(
        leaves,
        0.0,
        "leaf_ratio, the shell's child, is in the profile\n{}",
        top_leaves(&profile, 10)
    );
    assert!(
        profile
            .sample
            .iter()
            .all(|s| label(&profile, s, "process").is_none()),
        "one process, yet labelled by process"
    );
    let provenance = profile.comment.first().map(|&c| string(&profile, c));
    let expected = format!("record, PID {shell}");
    assert!(
        provenance.is_some_and(|comment| comment.ends_with(&expected)),
        "{provenance:?} is not the shell's ({shell}) profile"
    );
    // The shell waited for leaf_ratio (2 s) and exited: the window ended with it.
    assert!(stdout.contains("(target exited)"), "{stdout}");
}

/// The comm of a running process.
fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .expect("read the comm")
        .trim_end()
        .to_owned()
}

/// `--pid SHELL --children`: the two programs a running shell started are profiled (as a
/// server's workers under its master), each labelled and split 75/25, and left running.
#[test]
fn children_of_a_named_process_are_recorded_and_left_running() {
    let _cpu = exclusive();
    let program = programs::leaf_ratio();
    let script = format!(
        "{p} 30 & {p} 30 & wait",
        p = program.to_str().expect("a UTF-8 path")
    );
    let shell = Target::spawn(Path::new("/bin/sh"), &["-c", &script]);
    let recording = record_full(shell.pid(), 4, &["-F", "250", "--children"]);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    let mut children: Vec<i64> = profile
        .sample
        .iter()
        .filter(|sample| label(profile, sample, "process") == Some("leaf_ratio"))
        .filter_map(|sample| num_label(profile, sample, "pid"))
        .collect();
    children.sort_unstable();
    children.dedup();
    let running = |pid: i64| u32::try_from(pid).is_ok_and(is_running);
    let still_running: Vec<bool> = children.iter().map(|&pid| running(pid)).collect();
    for &pid in &children {
        // Not the test's children: ended here, the recording is over.
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    assert_eq!(children.len(), 2, "leaf_ratio processes: {children:?}");
    for &pid in &children {
        let own = of_process(profile, u32::try_from(pid).expect("a PID"));
        assert_leaf_ratio(&own, "leaf_a", "leaf_b", 0.75, 0.05);
    }
    assert_eq!(
        still_running,
        [true, true],
        "a named process's children were ended"
    );
}

#[test]
fn processes_named_by_pid_and_by_name_are_recorded_into_one_profile() {
    let _cpu = exclusive();
    let first = Target::start(&programs::leaf_ratio());
    // A name of its own (within comm's 15 characters), so that no other process matches.
    let dir = tempfile::tempdir().expect("create a directory");
    let name = format!("rpf{}", std::process::id() % 1_000_000_000);
    let copy = dir.path().join(&name);
    fs::copy(programs::leaf_ratio(), &copy).expect("copy the program");
    let second = Target::start(&copy);
    // A third process that cannot be recorded: said in one line, the others recorded.
    let missing = "999999999";
    let args = ["-F", "250", "--process", &name, "--pid", missing];
    let recording = record_full(first.pid(), 4, &args);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    for target in [&first, &second] {
        let (pid, process) = (target.pid(), comm(target.pid()));
        let own = of_process(profile, pid);
        println!("PID {pid} ({process}): {} samples", total_samples(&own));
        for sample in &own.sample {
            assert_eq!(label(&own, sample, "process"), Some(process.as_str()));
            assert_eq!(label(&own, sample, "tid"), Some(pid.to_string().as_str()));
        }
        assert_leaf_ratio(&own, "leaf_a", "leaf_b", 0.75, 0.05);
    }
    let recorded = total_samples(&of_process(profile, first.pid()))
        + total_samples(&of_process(profile, second.pid()));
    assert_eq!(
        recorded,
        total_samples(profile),
        "samples of no process named"
    );
    let stderr = recording.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(missing), "{stderr}");
}

#[test]
fn target_exit_ends_the_recording_early() {
    let _cpu = exclusive();
    // exits_soon spins for 1.5 s after ready, then exits 0.
    let target = Target::start(&programs::exits_soon());
    let recording = record_full(target.pid(), 30, HZ_ARG);
    assert!(
        recording.elapsed < Duration::from_secs(5),
        "the agent took {:?} to notice its target exit",
        recording.elapsed
    );
    assert!(
        total_samples(&recording.profile) > 0,
        "nothing recorded before the exit"
    );
    assert!(
        share_of(&recording.profile, "spin_until") > 0.5,
        "{}",
        top_leaves(&recording.profile, 10)
    );
}

/// Stops a 30 s recording with `signal` after 2 s: the agent must write what it has and exit 0.
fn stops_early_on(signal: libc::c_int) {
    let _cpu = exclusive();
    let target = Target::start(&programs::leaf_ratio());
    let dir = tempfile::tempdir().expect("create a directory");
    let out = dir.path().join("cpu.pb.gz");
    let mut cmd = rprof_integration::agent_command(&["record", "--seconds", "30", "-F", "250"]);
    cmd.arg("--pid")
        .arg(target.pid().to_string())
        .arg("-o")
        .arg(&out);
    let agent = Running::spawn(cmd, "rprof-agent record");
    thread::sleep(Duration::from_secs(2));
    agent.signal(signal);
    let signalled = Instant::now();
    let finished = agent.finish(Duration::from_secs(20));
    let stopping = signalled.elapsed();
    assert_success(&finished, "rprof-agent record, signalled");
    assert!(
        stopping < Duration::from_secs(5),
        "the agent took {stopping:?} to stop"
    );
    let profile = read_profile(&out);
    assert!(
        total_samples(&profile) > 0,
        "the early stop kept no samples"
    );
    let duration = Duration::from_nanos(u64::try_from(profile.duration_nanos).unwrap_or(0));
    assert!(
        duration < Duration::from_secs(10),
        "duration_nanos says {duration:?}"
    );
}

#[test]
fn sigint_stops_the_recording_and_keeps_it() {
    stops_early_on(libc::SIGINT);
}

#[test]
fn sigterm_stops_the_recording_and_keeps_it() {
    stops_early_on(libc::SIGTERM);
}

#[test]
fn missing_pid_is_one_clear_line() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let flags = ["record", "--pid", "999999999", "--seconds", "1", "-o"];
    let mut args = Vec::from(flags.map(OsString::from));
    args.push(dir.path().join("cpu.pb.gz").into_os_string());
    let finished = run_agent(&args, Duration::from_secs(30));
    assert!(!finished.status.success(), "exit 0 for a missing pid");
    let stderr = finished.stderr.trim();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line on stderr:\n{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("no such process"),
        "stderr does not say no such process: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "the agent panicked: {stderr}");
}

#[test]
fn system_time_is_sampled_under_the_stack_that_made_the_syscall() {
    let _cpu = exclusive();
    let program = build_c("write_null", &["-O2", "-fomit-frame-pointer", "-g"]);
    let target = Measuring::start(&program);
    let (user_before, system_before) = user_and_system(target.target.pid());
    let (recording, rates) = target.record_with(HZ_ARG, 5);
    let (user_after, system_after) = user_and_system(target.target.pid());
    let system =
        (system_after - system_before) / (user_after - user_before + system_after - system_before);
    println!(
        "system time: {:.0}% of the target's CPU time",
        100.0 * system
    );
    assert!(
        system >= 0.5,
        "premise: write_null spends most of its CPU time in the kernel, not {system}"
    );

    // Every sample stands for a period of user or system time: together they cover what the
    // program measured of its own CPU time (CLOCK_PROCESS_CPUTIME_ID) over the window.
    let profile = &recording.profile;
    let sampled = total_samples(profile) as f64 / f64::from(HZ);
    let window = profile.duration_nanos as f64 / 1e9;
    let used = rates[0] / 1e9 * window;
    let covered = sampled / used;
    println!(
        "samples cover {:.1}% of {used:.2}s of user + system time",
        100.0 * covered
    );
    // The upper bound is loose: on a loaded 2-core VM the per-thread cpu-clock overcounts
    // against the scheduler's own CPU time by ~10 % for any target, a plain spinner too.
    assert!(
        (0.9..=1.25).contains(&covered),
        "samples stand for {sampled:.2}s of {used:.2}s of user + system time\n{}",
        top_leaves(profile, 10)
    );

    // Time in the kernel sits on the user stack that entered it, under one syscall frame.
    let stacks = Stacks::new(profile);
    let in_syscall = stacks.fraction(
        |_, _| true,
        |frames| frames.first().is_some_and(|f| f.starts_with("[syscall")),
    );
    println!("samples under a syscall frame: {in_syscall}");
    assert!(
        in_syscall.ratio() >= 0.8 * system,
        "{in_syscall} of the samples are in a syscall for {:.0}% system time\n{}",
        100.0 * system,
        top_leaves(profile, 10)
    );
    let writes = stacks.fraction(
        |frames, _| frames.first() == Some(&"[syscall write]"),
        |frames| {
            frames.get(2) == Some(&"emit")
                && frames.contains(&"main")
                && frames.iter().skip(1).all(|f| !f.starts_with('['))
        },
    );
    println!("[syscall write] samples with emit as the caller of write, down to main: {writes}");
    assert!(
        writes.total > 0,
        "no [syscall write] frame\n{}",
        top_leaves(profile, 10)
    );
    assert!(
        writes.ratio() >= 0.95,
        "{writes} of [syscall write] stacks are libc write ← emit ← … ← main"
    );
}

/// The process's user and system CPU time in clock ticks (fields 14 and 15 of its stat).
fn user_and_system(pid: u32) -> (f64, f64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read the target's stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .expect("utime and stime")
    };
    (ticks(11), ticks(12))
}

#[test]
fn without_perfmon_system_time_is_left_out_with_one_warning() {
    let _cpu = exclusive();
    require_kernel_sampling_refused();
    let as_user = AS_UNPRIVILEGED;
    let program = build_c("write_null", &["-O2", "-fomit-frame-pointer", "-g"]);
    let mut target_args: Vec<&OsStr> = as_user.iter().map(OsStr::new).collect();
    target_args.push(program.as_os_str());
    let target = Target::spawn(Path::new("setpriv"), &target_args);
    let dir = tempfile::tempdir().expect("create a directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let pid = target.pid().to_string();
    let run = |extra: &[&str], out: &Path| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(as_user)
            .arg(agent_bin())
            .args(["record", "--pid", &pid, "--seconds", "2"]);
        cmd.args(extra).arg("-o").arg(out);
        Running::spawn(cmd, "rprof-agent record").finish(Duration::from_secs(30))
    };

    let out = dir.path().join("cpu.pb.gz");
    let finished = run(&[], &out);
    assert_success(&finished, "record as an unprivileged user");
    let warnings: Vec<&str> = finished
        .stderr
        .lines()
        .chain(finished.stdout.lines())
        .filter(|l| l.starts_with("warning:"))
        .collect();
    println!("{warnings:?}");
    assert_eq!(
        warnings.len(),
        1,
        "expected one warning:\n{}\n{}",
        finished.stdout,
        finished.stderr
    );
    for needed in ["system time", "CAP_PERFMON", "perf_event_paranoid", "%"] {
        assert!(
            warnings[0].contains(needed),
            "the warning does not say {needed:?}: {}",
            warnings[0]
        );
    }
    let profile = read_profile(&out);
    assert!(total_samples(&profile) > 0, "no samples of user time");
    let stacks = Stacks::new(&profile);
    let in_kernel = stacks.fraction(
        |_, _| true,
        |frames| {
            frames
                .iter()
                .any(|f| f.starts_with('[') && *f != "[lost samples]")
        },
    );
    assert_eq!(
        in_kernel.hits, 0,
        "kernel frames without the right to sample the kernel"
    );

    // Asked for explicitly, kernel frames are refused in one line that says what to drop.
    let out = dir.path().join("kernel.pb.gz");
    let finished = run(&["--kernel"], &out);
    assert_one_line_error(&finished, "--kernel", &["CAP_PERFMON", "drop --kernel"]);
    assert!(!out.exists(), "a profile was written");
}

#[test]
fn kernel_frames_come_on_top_of_complete_user_stacks() {
    let _cpu = exclusive();
    let target = Target::start(&build_c(
        "syscall_heavy",
        &["-O2", "-fomit-frame-pointer", "-g"],
    ));
    let (profile, _, _) = record(target.pid(), 3, &["-F", "250", "--kernel"]);
    let stacks = Stacks::new(&profile);
    let unmapped = |id: &u64| {
        profile
            .location
            .iter()
            .find(|l| l.id == *id)
            .is_some_and(|l| l.mapping_id == 0)
    };
    let total = total_samples(&profile);
    let mut in_kernel = 0;
    for sample in &profile.sample {
        let Some(leaf) = sample.location_id.first() else {
            continue;
        };
        if !unmapped(leaf) {
            continue;
        }
        in_kernel += sample.value[0];
        let frames = stacks.frames(sample);
        assert!(
            frames
                .first()
                .is_some_and(|f| !f.is_empty() && *f != "[kernel]"),
            "kernel leaf without a name (is /proc/kallsyms readable?): {frames:?}"
        );
        assert!(
            frames.contains(&"read_zeros"),
            "kernel stack not on top of its user stack: {frames:?}"
        );
        assert!(
            frames.contains(&"main"),
            "user part does not reach main: {frames:?}"
        );
    }
    println!("{in_kernel}/{total} samples with kernel frames");
    assert!(
        in_kernel as f64 >= 0.3 * total as f64,
        "only {in_kernel}/{total} samples in the kernel for a read(/dev/zero) loop\n{}",
        top_leaves(&profile, 10)
    );
}
