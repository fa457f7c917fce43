//! Churn: targets that create and destroy threads by the hundred, load and unload libraries,
//! fork and exec while they are recorded. The agent must survive it (exit 0, target alive, no
//! descriptor leak) and name every sample from the code that really ran it: threads that lived
//! a few milliseconds, libraries mapped and unmapped between two samples, a program replaced by
//! another under the same PID.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rprof_integration::{
    agent_command, assert_leaf_ratio, assert_success, build_c, comment_starting, exclusive, label,
    leaf_split, read_profile, record, string, top_leaves, total_samples, Fraction, Running, Stacks,
    Target,
};
use rprof_proto::pb::Profile;

/// Optimized, with DWARF, without frame pointers: only unwind tables can unwind them.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

/// What a thread's outermost frames may be called: glibc's thread start and clone.
const THREAD_ROOTS: &[&str] = &["start_thread", "clone3", "__clone3", "clone", "__clone"];

/// The number a churn program keeps writing to its counter file.
fn read_counter(path: &Path) -> u64 {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read the counter {}: {err}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|err| panic!("counter {} holds {text:?}: {err}", path.display()))
}

/// How much a churn program's counter grew per second while `f` ran.
fn counted_rate<T>(counter: &Path, f: impl FnOnce() -> T) -> (T, f64) {
    let (before, started) = (read_counter(counter), Instant::now());
    let result = f();
    let (after, elapsed) = (read_counter(counter), started.elapsed());
    (
        result,
        after.saturating_sub(before) as f64 / elapsed.as_secs_f64(),
    )
}

/// A recording during which the agent's open file descriptors were counted.
struct Watched {
    profile: Profile,
    stdout: String,
    /// (time since the agent started, descriptors open), every 50 ms.
    fds: Vec<(Duration, usize)>,
}

impl Watched {
    /// The most descriptors open at or after `from`.
    fn max_fds_from(&self, from: Duration) -> usize {
        self.fds
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(0)
    }

    /// The descriptors open at the first count at or after `at`.
    fn fds_at(&self, at: Duration) -> usize {
        self.fds
            .iter()
            .find(|(when, _)| *when >= at)
            .map_or(0, |&(_, n)| n)
    }
}

/// `rprof-agent record --pid PID --seconds S -o OUT EXTRA...`, counting the agent's
/// descriptors in /proc every 50 ms while it runs. Panics unless the agent exits 0.
fn record_watching_fds(pid: u32, seconds: u32, extra_args: &[&str]) -> Watched {
    let dir = tempfile::tempdir().expect("create a directory for the profile");
    let out = dir.path().join("cpu.pb.gz");
    let mut args: Vec<OsString> = ["record", "--pid", &pid.to_string(), "--seconds"]
        .iter()
        .map(OsString::from)
        .collect();
    args.extend([seconds.to_string().into(), "-o".into(), out.clone().into()]);
    args.extend(extra_args.iter().map(OsString::from));
    let agent = Running::spawn(agent_command(&args), "rprof-agent record");
    let fd_dir = PathBuf::from(format!("/proc/{}/fd", agent.pid()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let started = Instant::now();
            let mut counts = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Unreadable once the agent has exited (the watcher then just waits to stop).
                if let Ok(entries) = fs::read_dir(&fd_dir) {
                    counts.push((started.elapsed(), entries.count()));
                }
                thread::sleep(Duration::from_millis(50));
            }
            counts
        }
    });
    let finished = agent.finish(Duration::from_secs(u64::from(seconds) + 60));
    stop.store(true, Ordering::Relaxed);
    let fds = watcher.join().expect("the descriptor watcher panicked");
    assert_success(&finished, "rprof-agent record");
    Watched {
        profile: read_profile(&out),
        stdout: finished.stdout,
        fds,
    }
}

/// Of the samples that have one of `among` on their stack, those that reach one of `roots`.
fn rooted(profile: &Profile, among: &[&str], roots: &[&str]) -> Fraction {
    let stacks = Stacks::new(profile);
    stacks.fraction(
        |frames, _| frames.iter().any(|f| among.contains(f)),
        |frames| frames.iter().any(|f| roots.contains(f)),
    )
}

/// The file names of the mappings of the locations that have `function` among their lines.
fn mappings_of(profile: &Profile, function: &str) -> Vec<String> {
    let stacks = Stacks::new(profile);
    let mut files: Vec<String> = profile
        .location
        .iter()
        .filter(|location| stacks.location_frames(location).contains(&function))
        .map(|location| {
            profile
                .mapping
                .iter()
                .find(|mapping| mapping.id == location.mapping_id)
                .map_or_else(
                    || format!("<no mapping {}>", location.mapping_id),
                    |mapping| string(profile, mapping.filename).to_owned(),
                )
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Asserts that every location of each function is in the mapping of its own file.
fn assert_located_in(profile: &Profile, expected: &[(&str, &PathBuf)]) {
    for (function, file) in expected {
        assert_eq!(
            mappings_of(profile, function),
            [canonical(file)],
            "the locations of {function} are not all in {}",
            file.display()
        );
    }
}

fn canonical(path: &Path) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|err| panic!("canonicalize {}: {err}", path.display()))
        .to_string_lossy()
        .into_owned()
}

/// Copies a built program or library to `dir/name`, where the test controls its name.
fn install(built: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::copy(built, &path)
        .unwrap_or_else(|err| panic!("copy {} to {}: {err}", built.display(), path.display()));
    path
}

#[test]
fn hundreds_of_short_threads_a_second_are_sampled_and_named() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let counter = dir.path().join("created");
    let target = Target::spawn(&build_c("churn_threads", C_FLAGS), &[&counter]);
    // 1 kHz: each thread lives a few sampling periods (a new thread's period starts afresh).
    let (watched, rate) = counted_rate(&counter, || {
        record_watching_fds(target.pid(), 4, &["-F", "1000"])
    });
    println!("{rate:.0} threads created per second during the recording");
    assert!(
        rate >= 200.0,
        "the target created only {rate:.0} threads a second: not the churn under test"
    );
    assert!(!target.has_exited(), "the target died during the recording");
    let profile = &watched.profile;
    println!("{}", top_leaves(profile, 6));

    assert_leaf_ratio(profile, "churn_work_a", "churn_work_b", 0.75, 0.05);
    let workers = ["churn_work_a", "churn_work_b"];
    let roots = rooted(profile, &workers, THREAD_ROOTS);
    println!("worker samples reaching the thread root: {roots}");
    assert!(
        roots.ratio() >= 0.95,
        "{roots} of the worker samples unwind to {THREAD_ROOTS:?}\n{}",
        top_leaves(profile, 10)
    );
    // Hundreds of distinct short-lived threads, each followed from its creation.
    let stacks = Stacks::new(profile);
    let mut tids: Vec<&str> = profile
        .sample
        .iter()
        .filter(|sample| stacks.frames(sample).iter().any(|f| workers.contains(f)))
        .filter_map(|sample| label(profile, sample, "tid"))
        .collect();
    tids.sort_unstable();
    tids.dedup();
    println!("{} distinct worker threads sampled", tids.len());
    assert!(
        tids.len() >= 300,
        "worker samples come from only {} threads, while the target created {rate:.0} a second",
        tids.len()
    );

    // Threads inherit the events of the thread that created them: following them costs no
    // descriptor, and threads the agent had to attach itself must not leave theirs open. Their
    // events are closed when the agent drains, which it does per batch (up to a second apart):
    // a few threads' worth (one descriptor per CPU each) may wait that long, no more.
    let series: Vec<usize> = watched.fds.iter().map(|&(_, n)| n).collect();
    println!("agent descriptors every 50 ms: {series:?}");
    let settled = watched.fds_at(Duration::from_secs(1));
    let most = watched.max_fds_from(Duration::from_secs(1));
    assert!(
        settled > 0 && most <= settled + 12,
        "the agent's descriptors grew from {settled} to {most} while the target churned \
         threads: {series:?}\n{}",
        watched.stdout
    );
}

/// The share of the target's CPU time in samples, from the profile's comment.
fn sampled_share(profile: &Profile) -> f64 {
    let comment = profile
        .comment
        .iter()
        .map(|&c| string(profile, c))
        .find(|c| c.starts_with("target CPU time in the window"))
        .unwrap_or_else(|| panic!("no CPU time comment among {:?}", profile.comment));
    let percent = comment
        .rsplit('(')
        .next()
        .and_then(|p| p.split('%').next())
        .and_then(|p| p.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot read the share in {comment:?}"));
    percent / 100.0
}

#[test]
fn cpu_of_threads_too_short_to_sample_is_reported_unseen() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let counter = dir.path().join("created");
    let target = Target::spawn(&build_c("churn_threads", C_FLAGS), &[&counter]);
    // At 100 Hz a sampling period is 10 ms of a thread's CPU, longer than these threads run.
    let (profile, stdout, stderr) = record(target.pid(), 3, &[]);
    let share = sampled_share(&profile);
    println!("{stdout}\nsampled share of the target's CPU at 100 Hz: {share:.2}");
    assert!(
        share < 0.6,
        "{share:.2} of the CPU of threads shorter than a period was sampled: the premise failed"
    );
    assert!(
        stdout.contains("warning: only") && stdout.contains("raise -F"),
        "the summary does not warn about the unseen CPU time:\n{stdout}\n--- stderr\n{stderr}"
    );
    // At 1 kHz the same threads run several periods each, and most of their CPU is seen.
    let (profile, stdout, _) = record(target.pid(), 3, &["-F", "1000"]);
    let share = sampled_share(&profile);
    println!("sampled share of the target's CPU at 1 kHz: {share:.2}");
    assert!(
        share >= 0.6 && !stdout.contains("warning: only"),
        "at 1 kHz only {share:.2} of the CPU was sampled:\n{stdout}"
    );
}

#[test]
fn threads_too_short_to_sample_are_seen_in_a_cgroup_of_their_own() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let counter = dir.path().join("created");
    // Made before the target, so that it is removed after the target is gone.
    let cgroup = Cgroup::create(&format!("rprof-test-{}", std::process::id()));
    let target = Target::spawn(&build_c("churn_threads", C_FLAGS), &[&counter]);
    // The target alone in a cgroup, as a container or a systemd service runs.
    cgroup.add(target.pid());
    // 5 ms threads at 100 Hz: a per-thread event would never reach its first 10 ms period.
    let (profile, stdout, stderr) = record(target.pid(), 3, &[]);
    let scope = comment(&profile, "scope:");
    assert!(
        scope.contains("own cgroup") && scope.contains(&cgroup.name),
        "not scoped to the target's cgroup: {scope}\n{stdout}\n{stderr}"
    );
    let share = sampled_share(&profile);
    println!("{stdout}\nsampled share of the target's CPU at 100 Hz in its own cgroup: {share:.2}");
    assert!(
        (0.9..=1.15).contains(&share),
        "{share:.2} of the CPU of the cgroup's short threads was sampled at 100 Hz"
    );
    assert!(
        !stdout.contains("warning: only"),
        "a short-thread warning:\n{stdout}"
    );
    let split = leaf_split(&profile, "churn_work_a", "churn_work_b");
    println!("churn_work_a / both: {split}");
    assert!(
        split.total >= 100 && (split.ratio() - 0.75).abs() <= 0.08,
        "churn_work_a holds {split} of the two workers' samples, expected 75 %"
    );
}

/// A cgroup (v2) the test made, removed when it is dropped (once its processes are gone).
struct Cgroup {
    dir: PathBuf,
    name: String,
}

impl Cgroup {
    /// Makes `name` under the cgroup2 mount, which the test needs: it fails if there is none.
    fn create(name: &str) -> Cgroup {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        let mount = mountinfo
            .lines()
            .filter_map(|line| line.split_once(" - "))
            .find(|(_, rest)| rest.starts_with("cgroup2 "))
            .and_then(|(fields, _)| fields.split_whitespace().nth(4))
            .expect("no cgroup2 file system is mounted: this test needs one (cgroup v2)");
        let dir = Path::new(mount).join(name);
        fs::create_dir(&dir)
            .unwrap_or_else(|err| panic!("create cgroup {} (run as root): {err}", dir.display()));
        Cgroup {
            dir,
            name: name.to_owned(),
        }
    }

    fn add(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|err| panic!("move {pid} into {}: {err}", self.dir.display()));
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Its processes are killed first (declared after it, they drop before it); a cgroup
        // can be removed once their exit is complete.
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The profile comment that starts with `prefix`.
fn comment<'p>(profile: &'p Profile, prefix: &str) -> &'p str {
    comment_starting(profile, prefix)
        .unwrap_or_else(|| panic!("no {prefix} comment among {:?}", profile.comment))
}

#[test]
fn libraries_loaded_and_unloaded_mid_window_are_named_from_their_own_file() {
    const A: &str = "churn_plugin_a_burn";
    const B: &str = "churn_plugin_b_burn";
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let plugin = |name: &str, burn: &str| {
        let define = format!("-DPLUGIN_BURN={burn}");
        let flags = [C_FLAGS, &["-shared", "-fPIC", define.as_str()]].concat();
        install(&build_c("churn_plugin", &flags), dir.path(), name)
    };
    let (lib_a, lib_b) = (plugin("libchurn_a.so", A), plugin("libchurn_b.so", B));
    let counter = dir.path().join("opened");
    let args: [&Path; 3] = [&lib_a, &lib_b, &counter];
    let target = Target::spawn(&build_c("churn_dlopen", C_FLAGS), &args);
    let ((profile, stdout, stderr), rate) =
        counted_rate(&counter, || record(target.pid(), 4, &["-F", "250"]));
    println!("{rate:.0} dlopen+dlclose a second during the recording\n{stdout}");
    assert!(
        rate >= 50.0,
        "the target loaded a plugin only {rate:.0} times a second: not the churn under test"
    );
    assert!(!target.has_exited(), "the target died during the recording");
    let top = top_leaves(&profile, 10);

    // The plugins are where the time goes, and each sample is named from its own plugin.
    assert_leaf_ratio(&profile, A, B, 0.75, 0.05);
    let in_plugins = leaf_split(&profile, A, B).total as f64 / total_samples(&profile) as f64;
    println!("plugin leaves: {:.1} % of all samples", 100.0 * in_plugins);
    assert!(
        in_plugins >= 0.5,
        "the plugins' burn functions are the leaf of only {:.1} % of the samples\n{top}\n\
         --- stderr\n{stderr}",
        100.0 * in_plugins
    );
    // Unwound through the plugin's own .eh_frame, back into the program that loaded it.
    let roots = rooted(&profile, &[A, B], &["main"]);
    println!("plugin samples reaching main: {roots}");
    assert!(
        roots.ratio() >= 0.95,
        "{roots} of the plugin samples unwind to main\n{top}"
    );
    assert_located_in(&profile, &[(A, &lib_a), (B, &lib_b)]);
    // One mapping per load address at most, not one per dlopen: the recording saw hundreds.
    let plugin_mappings = profile
        .mapping
        .iter()
        .filter(|m| string(&profile, m.filename).contains("libchurn_"))
        .count();
    println!(
        "{plugin_mappings} plugin mappings, {} in all",
        profile.mapping.len()
    );
    assert!(
        plugin_mappings <= 16,
        "{plugin_mappings} mappings of the plugins for {rate:.0} loads a second"
    );
}

#[test]
fn forked_and_execed_children_stay_out_of_the_parents_profile() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    let counter = dir.path().join("forked");
    let target = Target::spawn(&build_c("churn_fork", C_FLAGS), &[&counter]);
    // The parent's own CPU time: /proc/PID/stat counts the children's apart (cutime, cstime).
    let cpu_before = target.cpu_time();
    let ((profile, stdout, _), rate) =
        counted_rate(&counter, || record(target.pid(), 3, &["-F", "250"]));
    let parent_cpu = target.cpu_time().saturating_sub(cpu_before);
    println!("{rate:.0} children forked a second during the recording\n{stdout}");
    assert!(
        rate >= 20.0,
        "the target forked only {rate:.0} children a second: not the churn under test"
    );
    assert!(!target.has_exited(), "the target died during the recording");
    let top = top_leaves(&profile, 10);
    let total = total_samples(&profile);
    let stacks = Stacks::new(&profile);
    let parent = stacks.fraction(
        |_, _| true,
        |frames| frames.first() == Some(&"churn_parent_work"),
    );
    println!("churn_parent_work leaf: {parent}");
    assert!(
        total >= 100 && parent.ratio() >= 0.8,
        "churn_parent_work is the leaf of {parent} of the samples\n{top}"
    );
    // No more samples than the parent's own CPU time is worth at 250 Hz (the children burn
    // about as much again on the other CPU): none of theirs was counted under another name.
    let worth = parent_cpu.as_secs_f64() * 250.0;
    println!("{total} samples for {parent_cpu:?} of the parent's CPU time ({worth:.0} at 250 Hz)");
    assert!(
        total as f64 <= 1.2 * worth + 10.0,
        "{total} samples for {parent_cpu:?} of the parent's CPU time, worth {worth:.0}\n{top}"
    );
    let child = stacks.fraction(|_, _| true, |frames| frames.contains(&"churn_child_work"));
    assert_eq!(
        child.hits, 0,
        "{child} of the samples are the children's\n{top}"
    );
    // The parent is single-threaded: every sample is its one thread's.
    let pid = target.pid().to_string();
    let foreign: i64 = profile
        .sample
        .iter()
        .filter(|sample| label(&profile, sample, "tid").is_some_and(|tid| tid != pid))
        .map(|sample| sample.value[0])
        .sum();
    assert_eq!(
        foreign, 0,
        "{foreign} samples of other threads than {pid}\n{top}"
    );
}

#[test]
fn exec_mid_window_names_each_sample_from_the_program_that_ran_it() {
    const A: &str = "churn_exec_a_work";
    const B: &str = "churn_exec_b_work";
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("create a directory");
    // Not PIE: both programs load at the same address, their work functions at the same one.
    let program = |name: &str, work: &str| {
        let define = format!("-DWORK_FN={work}");
        let flags = [C_FLAGS, &["-no-pie", define.as_str()]].concat();
        install(&build_c("churn_exec", &flags), dir.path(), name)
    };
    let (prog_a, prog_b) = (program("churn_exec_a", A), program("churn_exec_b", B));
    // A spins 1 s after ready, then execs B, which spins until killed.
    let args: [&std::ffi::OsStr; 3] = ["1".as_ref(), prog_b.as_os_str(), "0".as_ref()];
    let target = Target::spawn(&prog_a, &args);
    let (profile, stdout, stderr) = record(target.pid(), 3, &["-F", "250"]);
    println!("{stdout}");
    assert!(!target.has_exited(), "the target died during the recording");
    let exe = fs::read_link(format!("/proc/{}/exe", target.pid())).expect("read the target's exe");
    assert_eq!(
        exe.to_string_lossy(),
        canonical(&prog_b),
        "the target did not exec"
    );
    let top = top_leaves(&profile, 10);
    let total = total_samples(&profile) as f64;
    let split = leaf_split(&profile, A, B);
    println!("{A} / ({A} + {B}) = {split}");
    // About 1 s of A and 2 s of B; the agent attaches a little after A started.
    assert!(
        split.total as f64 >= 0.9 * total && total >= 200.0,
        "{A} and {B} are the leaves of only {split} of {total} samples\n{top}\n--- stderr\n{stderr}"
    );
    assert!(
        (0.15..=0.5).contains(&split.ratio()),
        "{A} holds {split} of the work samples, expected about a third\n{top}"
    );
    assert_located_in(&profile, &[(A, &prog_a), (B, &prog_b)]);
    // pprof shows mapping 1 as the profiled program: the one running now.
    let first = profile
        .mapping
        .first()
        .map(|m| string(&profile, m.filename));
    assert_eq!(
        first,
        Some(canonical(&prog_b).as_str()),
        "mapping 1 is not the program the target runs now"
    );
    let roots = rooted(&profile, &[A, B], &["main"]);
    println!("work samples reaching main: {roots}");
    assert!(
        roots.ratio() >= 0.95,
        "{roots} of the work samples unwind to main\n{top}"
    );
    // The thread is named after the program running when each sample was taken: the exec
    // renames it, but not the samples from before.
    let stacks = Stacks::new(&profile);
    for (function, name) in [(A, "churn_exec_a"), (B, "churn_exec_b")] {
        let named = stacks.fraction(|frames, _| frames.first() == Some(&function), |_| true);
        let mislabeled: Vec<&str> = profile
            .sample
            .iter()
            .filter(|s| stacks.frames(s).first() == Some(&function))
            .filter_map(|s| label(&profile, s, "thread"))
            .filter(|thread| *thread != name)
            .collect();
        assert!(
            named.total > 0 && mislabeled.is_empty(),
            "{} of {named} {function} samples are not labeled thread={name}: {mislabeled:?}",
            mislabeled.len()
        );
    }
}
