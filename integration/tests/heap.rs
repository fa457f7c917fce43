//! `rprof-agent record --profile allocs|heap`, end to end: real programs that allocate known
//! amounts from known call sites (glibc malloc, C++ new, Rust's global allocator, jemalloc),
//! counting what they allocate; allocator uprobes from outside; profiles checked against the
//! programs' counts, read back by `go tool pprof` and served over HTTP; and the target's
//! malloc back at full speed once the agent is gone, however it went.
//!
//! The profile shape these tests rely on (Go's heap profile): sample types `alloc_objects/count`,
//! `alloc_space/bytes`, `inuse_objects/count`, `inuse_space/bytes`, in that order; default
//! `alloc_space` for allocs, `inuse_space` for heap; stacks leaf first, the allocator function
//! (`malloc`, `operator new`...) then its callers. Sampled values are estimates scaled from
//! time windows; `--exact` traces every call. inuse: allocated during the recording and still
//! live at its end.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rprof_integration::programs::{cpp_allocs, jemalloc_allocs, leak_sites, rust_allocs};
use rprof_integration::{
    agent_command, assert_split, assert_success, decode_profile, exclusive, pprof_output,
    record_full, sample_types, string, total, Measuring, Running, Stacks,
};
use rprof_proto::pb::{Profile, Sample};

/// Recording window, seconds, with `--exact`.
const SECONDS: u32 = 5;
/// Recording window, seconds, sampled: windows open every 0.5–2 s at the default 0.5 % budget,
/// so ~10–20 of them (at 5 s, with ~5, one run in a few dozen came out 14 % off).
const SAMPLED_SECONDS: u32 = 10;

/// The sample types of both kinds, in order, and their indices.
const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];
const ALLOC_OBJECTS: usize = 0;
const ALLOC_SPACE: usize = 1;
const INUSE_OBJECTS: usize = 2;
const INUSE_SPACE: usize = 3;

/// leak_sites' figures (see programs/leak_sites.c), in the order it writes them.
const A_BYTES: usize = 0;
const B_BYTES: usize = 1;
const CHURN_BYTES: usize = 2;
const A_CALLS: usize = 3;
const B_CALLS: usize = 4;
const CHURN_CALLS: usize = 5;
const CHURN_NS: usize = 6;
/// How many churn blocks leak_sites keeps live at any time.
const CHURN_SLOTS: f64 = 4.0;

/// cpp_allocs', rust_allocs' and jemalloc_allocs' figures.
const SITE_A_BYTES: usize = 0;
const SITE_B_BYTES: usize = 1;
const SITE_A_OBJECTS: usize = 2;
const SITE_B_OBJECTS: usize = 3;

/// Go's heap profile shape, with `default` as the default sample type.
fn assert_heap_shape(profile: &Profile, default: &str) {
    assert_eq!(sample_types(profile), SAMPLE_TYPES);
    assert_eq!(string(profile, profile.default_sample_type), default);
    assert!(profile.duration_nanos > 0, "the profile has no duration");
}

fn window_seconds(profile: &Profile) -> f64 {
    profile.duration_nanos as f64 / 1e9
}

/// Samples whose stack holds `site` (exactly, as a C function is named).
fn at(site: &'static str) -> impl Fn(&[&str], &Sample) -> bool {
    move |frames: &[&str], _: &Sample| frames.contains(&site)
}

/// Samples whose stack holds a frame containing `site` (C++ `site_a(unsigned int)`, Rust
/// `rust_allocs::site_a`).
fn at_named(site: &'static str) -> impl Fn(&[&str], &Sample) -> bool {
    move |frames: &[&str], _: &Sample| frames.iter().any(|f| f.contains(site))
}

fn everywhere(_: &[&str], _: &Sample) -> bool {
    true
}

/// `value`'s total over the samples at `site`, per second of the window.
fn per_second(profile: &Profile, value: usize, keep: impl Fn(&[&str], &Sample) -> bool) -> f64 {
    total(profile, value, keep) / window_seconds(profile)
}

/// Asserts that `profiled` (per second of the window) is within `tolerance` of `measured` (per
/// second of the program's clock).
fn assert_rate(what: &str, profiled: f64, measured: f64, tolerance: f64) {
    let error = profiled / measured - 1.0;
    println!(
        "{what}: {profiled:.0}/s in the profile, {measured:.0}/s measured ({:+.2} %)",
        100.0 * error
    );
    assert!(
        error.abs() <= tolerance,
        "{what}: {profiled:.0}/s in the profile, {measured:.0}/s measured by the program: \
         {:+.2} % off (tolerance ±{:.0} %)",
        100.0 * error,
        100.0 * tolerance
    );
}

/// The heaviest stacks by `value`, for failure messages.
fn top_stacks(profile: &Profile, value: usize, n: usize) -> String {
    let stacks = Stacks::new(profile);
    let mut samples: Vec<&Sample> = profile.sample.iter().collect();
    samples.sort_by_key(|sample| std::cmp::Reverse(sample.value.get(value).copied()));
    samples
        .iter()
        .take(n)
        .map(|sample| {
            format!(
                "{:>12} {}",
                sample.value.get(value).copied().unwrap_or(0),
                stacks.frames(sample).join(" < ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every stack through one of `sites` starts at an allocator function and reaches `main`
/// (C's or Rust's); at least one does.
fn assert_allocation_stacks(profile: &Profile, sites: &[&str]) {
    let stacks = Stacks::new(profile);
    let mut seen = 0;
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if !frames
            .iter()
            .any(|frame| sites.iter().any(|site| frame.contains(site)))
        {
            continue;
        }
        seen += 1;
        let leaf = frames.first().copied().unwrap_or_default();
        assert!(
            [
                "malloc",
                "calloc",
                "realloc",
                "alloc",
                "operator new",
                "new"
            ]
            .iter()
            .any(|allocator| leaf.contains(allocator)),
            "the leaf of an allocation stack is not an allocator function: {frames:?}"
        );
        assert!(
            frames.iter().any(|f| *f == "main" || f.ends_with("::main")),
            "an allocation stack does not reach main: {frames:?}"
        );
    }
    assert!(
        seen > 0,
        "no stack through {sites:?}:\n{}",
        top_stacks(profile, ALLOC_SPACE, 10)
    );
}

// ---------------------------------------------------------------------------------------------
// leak_sites: what is still in use, what was allocated.

/// The heap profile of leak_sites: leak_a and leak_b hold what is in use, 3:1, and the churn,
/// which allocated ~40 times their bytes, holds next to nothing.
fn check_heap(profile: &Profile, rates: &[f64]) {
    assert_heap_shape(profile, "inuse_space");
    let inuse_a = total(profile, INUSE_SPACE, at("leak_a"));
    let inuse_b = total(profile, INUSE_SPACE, at("leak_b"));
    assert_split(
        "leak_a's share of inuse_space",
        [inuse_a, inuse_b],
        [rates[A_BYTES], rates[B_BYTES]],
        0.74..=0.76,
    );
    let inuse = total(profile, INUSE_SPACE, everywhere);
    let inuse_churn = total(profile, INUSE_SPACE, at("churn"));
    println!(
        "churn: {:.2} % of inuse_space ({inuse_churn:.0} of {inuse:.0} bytes)",
        100.0 * inuse_churn / inuse
    );
    assert!(
        inuse_churn <= 0.05 * inuse,
        "churn holds {:.1} % of inuse_space, but frees every block within {CHURN_SLOTS} \
         calls:\n{}",
        100.0 * inuse_churn / inuse,
        top_stacks(profile, INUSE_SPACE, 10)
    );
    check_churn_on_top(profile);
    assert_allocation_stacks(profile, &["leak_a", "leak_b", "churn"]);
}

/// In alloc_space the churn, 97.6 % of the bytes leak_sites allocates, comes first.
fn check_churn_on_top(profile: &Profile) {
    let alloc = total(profile, ALLOC_SPACE, everywhere);
    let churn = total(profile, ALLOC_SPACE, at("churn"));
    let leak_a = total(profile, ALLOC_SPACE, at("leak_a"));
    println!(
        "churn: {:.1} % of alloc_space, leak_a {:.1} %",
        100.0 * churn / alloc,
        100.0 * leak_a / alloc
    );
    assert!(
        churn >= 0.9 * alloc && churn > leak_a,
        "churn allocated 97.6 % of the bytes but holds {:.1} % of alloc_space:\n{}",
        100.0 * churn / alloc,
        top_stacks(profile, ALLOC_SPACE, 10)
    );
}

/// The allocs profile of leak_sites: bytes and objects per site and per second of the window,
/// against what the program counted per second of its clock, within `tolerance`.
fn check_allocs(profile: &Profile, rates: &[f64], tolerance: f64) {
    let sites = [
        ("leak_a", A_BYTES, A_CALLS),
        ("leak_b", B_BYTES, B_CALLS),
        ("churn", CHURN_BYTES, CHURN_CALLS),
    ];
    let space: f64 = sites
        .iter()
        .map(|(site, _, _)| per_second(profile, ALLOC_SPACE, at(site)))
        .sum();
    let objects: f64 = sites
        .iter()
        .map(|(site, _, _)| per_second(profile, ALLOC_OBJECTS, at(site)))
        .sum();
    let measured_space: f64 = sites.iter().map(|(_, bytes, _)| rates[*bytes]).sum();
    let measured_objects: f64 = sites.iter().map(|(_, _, calls)| rates[*calls]).sum();
    assert_rate("alloc_space", space, measured_space, tolerance);
    assert_rate("alloc_objects", objects, measured_objects, tolerance);
    // The churn alone: 99 % of the calls, in sizes that vary call by call.
    assert_rate(
        "churn's alloc_space",
        per_second(profile, ALLOC_SPACE, at("churn")),
        rates[CHURN_BYTES],
        tolerance,
    );
    check_churn_on_top(profile);
    assert_allocation_stacks(profile, &["leak_a", "leak_b", "churn"]);
}

#[test]
fn heap_attributes_the_memory_still_in_use_to_the_leaking_sites() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let (recording, rates) = program.record_with(&["--profile", "heap"], SAMPLED_SECONDS);
    println!("{}", recording.stdout);
    check_heap(&recording.profile, &rates);
}

#[test]
fn heap_exact_counts_every_leaked_byte_and_no_churn() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let (recording, rates) = program.record_with(&["--profile", "heap", "--exact"], SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    check_heap(profile, &rates);
    // Every leaked block of the window is still live at its end, and nothing else but the few
    // churn blocks not yet freed.
    let leaked = per_second(profile, INUSE_SPACE, at("leak_a"))
        + per_second(profile, INUSE_SPACE, at("leak_b"));
    assert_rate(
        "leaked bytes in use",
        leaked,
        rates[A_BYTES] + rates[B_BYTES],
        0.01,
    );
    let churn_live = total(profile, INUSE_OBJECTS, at("churn"));
    assert!(
        churn_live <= 2.0 * CHURN_SLOTS,
        "{churn_live} churn blocks in use at the end of the window; the program never has \
         more than {CHURN_SLOTS} live"
    );
    // Whatever is in use was allocated: inuse never exceeds alloc, stack by stack.
    for sample in &profile.sample {
        assert!(
            sample.value[INUSE_SPACE] <= sample.value[ALLOC_SPACE]
                && sample.value[INUSE_OBJECTS] <= sample.value[ALLOC_OBJECTS],
            "more in use than allocated: {:?}",
            sample.value
        );
    }
}

#[test]
fn allocs_estimates_the_bytes_and_objects_allocated_within_ten_percent() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let (recording, rates) = program.record_with(&["--profile", "allocs"], SAMPLED_SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    assert_heap_shape(profile, "alloc_space");
    check_allocs(profile, &rates, 0.10);
}

/// A thread whose pace is its own (leak_sites --busy: fixed work after each unit, never idle,
/// like a batch job) does less of its work inside windows, where each call traps (~17 % less
/// at its ~25 000 calls a second here): the allocs figures are scaled up for it, from its CPU
/// time, so they still come within 10 % of its count (uncorrected, they came out 15–20 %
/// low), and are not called lower bounds, which the figures of a thread running flat out in
/// malloc are.
#[test]
fn allocs_of_a_thread_slowed_by_its_traps_are_scaled_up_for_the_work_they_held_back() {
    let _cpu = exclusive();
    let program = Measuring::start_with(&leak_sites(), &["--busy"]);
    // A 2 % budget: 4 times the windows of the default, so that the estimate's spread (±4 %
    // at the default over 5 s) stays clear of the bias this test is about.
    let (recording, rates) =
        program.record_with(&["--profile", "allocs", "--max-overhead", "2"], SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    let comments: Vec<&str> = profile
        .comment
        .iter()
        .map(|&i| string(profile, i))
        .collect();
    println!("{}", comments.join("\n"));
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("1 thread slowed by the probes did")),
        "no thread found slowed by its traps: {comments:?}"
    );
    assert!(
        !recording.stdout.contains("lower bounds"),
        "a thread that traps ~17 % of its time is not flat out: {}",
        recording.stdout
    );
    assert!(
        recording
            .stdout
            .contains("100% of the allocations seen came from threads whose traps took"),
        "its traps took ~17 % of its window time: no warning that its figures may be low: {}",
        recording.stdout
    );
    check_allocs(profile, &rates, 0.10);
}

/// The coverage the summary line gives ("coverage 1.23%"), percent.
fn coverage(summary: &str) -> f64 {
    summary
        .split("coverage ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no coverage in the summary: {summary}"))
}

/// `--max-overhead 4` lets windows open several times as often as the default 0.5 % (for
/// leak_sites' 25 000 calls a second the rings cap each window, so only their number grows),
/// and the estimate holds.
#[test]
fn a_larger_overhead_budget_sees_more_of_the_calls() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let (recording, rates) =
        program.record_with(&["--profile", "allocs", "--max-overhead", "4"], SECONDS);
    println!("{}", recording.stdout);
    let seen = coverage(&recording.stdout);
    assert!(
        seen >= 6.0,
        "windows open {seen} % of the time with a 4 % budget (~1.5 % with the default 0.5 %)"
    );
    check_allocs(&recording.profile, &rates, 0.10);
}

#[test]
fn allocs_exact_counts_the_bytes_and_objects_allocated_within_one_percent() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let (recording, rates) = program.record_with(&["--profile", "allocs", "--exact"], SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    assert_heap_shape(profile, "alloc_space");
    check_allocs(profile, &rates, 0.01);
    assert_split(
        "leak_a's share of alloc_space",
        [
            total(profile, ALLOC_SPACE, at("leak_a")),
            total(profile, ALLOC_SPACE, at("leak_b")),
        ],
        [rates[A_BYTES], rates[B_BYTES]],
        0.74..=0.76,
    );
}

// ---------------------------------------------------------------------------------------------
// Other allocators and languages: two sites, 3:1 in bytes, 1:1 in objects.

fn check_two_sites(program: &Path, site_a: &'static str, site_b: &'static str) {
    let program = Measuring::start(program);
    let (recording, rates) = program.record_with(&["--profile", "allocs"], SAMPLED_SECONDS);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    assert_heap_shape(profile, "alloc_space");
    assert_split(
        &format!("{site_a}'s share of alloc_space"),
        [
            total(profile, ALLOC_SPACE, at_named(site_a)),
            total(profile, ALLOC_SPACE, at_named(site_b)),
        ],
        [rates[SITE_A_BYTES], rates[SITE_B_BYTES]],
        0.74..=0.76,
    );
    assert_split(
        &format!("{site_a}'s share of alloc_objects"),
        [
            total(profile, ALLOC_OBJECTS, at_named(site_a)),
            total(profile, ALLOC_OBJECTS, at_named(site_b)),
        ],
        [rates[SITE_A_OBJECTS], rates[SITE_B_OBJECTS]],
        0.49..=0.51,
    );
    assert_allocation_stacks(profile, &[site_a, site_b]);
}

#[test]
fn allocs_sees_cpp_new_and_delete() {
    let _cpu = exclusive();
    check_two_sites(&cpp_allocs(), "site_a", "site_b");
}

#[test]
fn allocs_sees_rusts_global_allocator() {
    let _cpu = exclusive();
    check_two_sites(&rust_allocs(), "::site_a", "::site_b");
}

#[test]
fn allocs_sees_jemalloc_when_the_target_links_it() {
    let _cpu = exclusive();
    check_two_sites(&jemalloc_allocs(), "site_a", "site_b");
}

// ---------------------------------------------------------------------------------------------
// Read by go tool pprof, from a file and over HTTP.

/// `go tool pprof ARGS TARGET`, which must succeed; its output.
fn pprof(args: &[&str], target: &OsStr) -> String {
    pprof_output(args, target)
}

/// What go tool pprof must print of a heap profile of leak_sites (`default`: the default
/// sample type). `leaks`: whether the window is long enough to be sure to see leak_a (leak_sites
/// leaks only 250 times a second, a sampled window of 2 s may catch none).
fn check_pprof_reads(target: &OsStr, default: &str, leaks: bool) {
    let raw = pprof(&["-raw"], target);
    let types = SAMPLE_TYPES
        .iter()
        .map(|(kind, unit)| {
            let dflt = if *kind == default { "[dflt]" } else { "" };
            format!("{kind}/{unit}{dflt}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    assert!(raw.contains(&types), "no `{types}` in:\n{raw}");
    let top = pprof(&["-top"], target);
    assert!(top.contains(&format!("Type: {default}")), "{top}");
    let inuse = pprof(&["-sample_index=inuse_space", "-top", "-cum"], target);
    assert!(inuse.contains("Type: inuse_space"), "{inuse}");
    assert!(!leaks || inuse.contains("leak_a"), "no leak_a in:\n{inuse}");
    let alloc = pprof(&["-sample_index=alloc_space", "-top", "-cum"], target);
    assert!(alloc.contains("Type: alloc_space"), "{alloc}");
    assert!(alloc.contains("churn"), "no churn in:\n{alloc}");
}

#[test]
fn go_tool_pprof_reads_the_heap_and_allocs_profiles() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let dir = tempfile::tempdir().expect("create a directory");
    for (kind, default) in [("heap", "inuse_space"), ("allocs", "alloc_space")] {
        let recording = record_full(program.target.pid(), SECONDS, &["--profile", kind]);
        let file = dir.path().join(format!("{kind}.pb.gz"));
        fs::write(&file, &recording.bytes).expect("write the profile");
        check_pprof_reads(file.as_os_str(), default, true);
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn go_tool_pprof_fetches_heap_and_allocs_windows_from_serve() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let pid = program.target.pid().to_string();
    let server = Running::spawn(
        agent_command(&["serve", "--listen", &listen, "--pid", &pid]),
        "rprof-agent serve",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rprof-agent serve did not listen on {listen}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for (endpoint, default) in [("heap", "inuse_space"), ("allocs", "alloc_space")] {
        let url = format!("http://{listen}/debug/pprof/{endpoint}?seconds=2");
        check_pprof_reads(OsStr::new(&url), default, false);
    }
    server.signal(libc::SIGTERM);
    let finished = server.finish(Duration::from_secs(30));
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
}

// ---------------------------------------------------------------------------------------------
// Nothing stays armed once the agent is gone.

/// Where tracefs is mounted.
fn tracefs() -> PathBuf {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("uprobe_events").exists())
        .expect("tracefs is not mounted (scripts/setup mounts it on /sys/kernel/tracing)")
}

/// The uprobe events defined in tracefs: (group, event, probed file) of each.
fn uprobe_events() -> Vec<(String, String, String)> {
    let path = tracefs().join("uprobe_events");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    text.lines()
        .filter_map(|line| {
            // p[:[GRP/]EVENT] PATH:OFFSET[(REF)] [FETCHARGS], or r: for a return probe.
            let mut words = line.split_whitespace();
            let (group, event) = words.next()?.split_once(':')?.1.split_once('/')?;
            let file = words.next()?.rsplit_once(':')?.0;
            Some((group.to_owned(), event.to_owned(), file.to_owned()))
        })
        .collect()
}

/// The files process `pid` maps, as (device, inode): a probe's path may name a file another way
/// than the target's maps do (`/lib` for `/usr/lib`, through `/proc/PID/root`...).
fn mapped_files(pid: u32) -> HashSet<(u64, u64)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("read the target's maps");
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .filter_map(|path| file_id(&format!("/proc/{pid}/root{path}")))
        .collect()
}

fn file_id(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// The uprobe events on the target's files that tracefs has enabled (ftrace's `enable`): those
/// trap on every call whether or not anybody reads them, and outlive any process. (Events
/// opened through perf_event_open read 0 there, and close with their last descriptor.)
fn enabled_uprobes_on(pid: u32) -> Vec<String> {
    let files = mapped_files(pid);
    let events = tracefs().join("events");
    uprobe_events()
        .into_iter()
        .filter(|(_, _, file)| file_id(file).is_some_and(|id| files.contains(&id)))
        .filter(|(group, event, _)| {
            fs::read_to_string(events.join(group).join(event).join("enable"))
                .is_ok_and(|enable| enable.trim() != "0")
        })
        .map(|(group, event, file)| format!("{group}/{event} on {file}"))
        .collect()
}

/// The uprobe events left defined by agent `agent_pid`, which has exited: groups named for
/// rprof and that pid (the naming is the agent's: `rprof_<pid>...`).
fn events_of_gone_agent(agent_pid: u32) -> Vec<String> {
    let pid = agent_pid.to_string();
    uprobe_events()
        .into_iter()
        .filter(|(group, _, _)| {
            group.contains("rprof") && group.split(|c: char| !c.is_ascii_digit()).any(|n| n == pid)
        })
        .map(|(group, event, file)| format!("{group}/{event} on {file}"))
        .collect()
}

/// After agent `agent_pid` is gone: within 5 s, no uprobe of it is left defined and none on the
/// target's files is enabled.
fn assert_no_uprobes_left(target_pid: u32, agent_pid: u32, how: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = events_of_gone_agent(agent_pid);
        let enabled = enabled_uprobes_on(target_pid);
        if left.is_empty() && enabled.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "5 s after the agent {how}: uprobe events of the gone agent {agent_pid} still \
             defined: {left:?}; enabled on the target's files: {enabled:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn malloc_runs_at_full_speed_again_once_the_recording_ends_or_the_agent_is_killed() {
    let _cpu = exclusive();
    let program = Measuring::start(&leak_sites());
    let pid = program.target.pid();
    // What one churn call (malloc, memset, free) costs, timed by the program itself: the best of
    // three half seconds, in CPU time (preemption by other load does not count). A uprobe trap
    // costs at least 0.5 µs a call, ~10 times the call: a factor of 3 is noise, not a probe.
    let ns_per_call = || {
        (0..3)
            .map(|_| {
                let before = program.figures();
                thread::sleep(Duration::from_millis(500));
                let after = program.figures();
                let calls = after.values[CHURN_CALLS] - before.values[CHURN_CALLS];
                let ns = after.values[CHURN_NS] - before.values[CHURN_NS];
                ns as f64 / calls.max(1) as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let baseline = ns_per_call();
    println!("churn call: {baseline:.0} ns before any recording");

    // A recording that ends as asked.
    let dir = tempfile::tempdir().expect("create a directory");
    let out = dir.path().join("heap.pb.gz");
    let target_pid = pid.to_string();
    let record = |seconds: &str| {
        let mut cmd = agent_command(&[
            "record",
            "--pid",
            &target_pid,
            "--seconds",
            seconds,
            "--profile",
            "heap",
            "--exact",
            "-o",
        ]);
        cmd.arg(&out);
        Running::spawn(cmd, "rprof-agent record")
    };
    let agent = record("2");
    let agent_pid = agent.pid();
    let ended = agent.finish(Duration::from_secs(62));
    assert_success(&ended, "rprof-agent record --profile heap --exact");
    let profile = decode_profile(&fs::read(&out).expect("read the profile"));
    assert!(!profile.sample.is_empty(), "an empty profile");
    fs::remove_file(&out).expect("remove the profile");
    thread::sleep(Duration::from_millis(300));
    let after_end = ns_per_call();
    println!("churn call: {after_end:.0} ns after a recording ended");
    assert!(
        after_end <= 3.0 * baseline,
        "a churn call takes {after_end:.0} ns after the recording ended, {baseline:.0} ns before"
    );
    assert_no_uprobes_left(pid, agent_pid, "ended");

    // A recording killed in the middle of its window, once it visibly traces every call.
    let agent = record("60");
    let agent_pid = agent.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    let traced = loop {
        let now = ns_per_call();
        if now >= 5.0 * baseline {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "a churn call still takes {now:.0} ns ({baseline:.0} ns before) 20 s after \
             `record --exact` started: is it tracing every call?"
        );
    };
    println!("churn call: {traced:.0} ns while traced");
    agent.signal(libc::SIGKILL);
    let killed = agent.finish(Duration::from_secs(10));
    assert!(!killed.status.success(), "the agent was killed");
    thread::sleep(Duration::from_millis(500));
    let after_kill = ns_per_call();
    println!("churn call: {after_kill:.0} ns after the agent was killed");
    assert!(
        after_kill <= 3.0 * baseline,
        "a churn call takes {after_kill:.0} ns after the agent was killed, {baseline:.0} ns \
         before it started: a probe outlived the agent"
    );
    assert_no_uprobes_left(pid, agent_pid, "was killed");
    assert!(!out.exists(), "a killed agent wrote a profile");
}
