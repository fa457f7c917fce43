//! Hostile targets and bad input: nonsense flags, unwritable outputs, zombies and kernel threads
//! must each cost one clear error line and a non-zero exit (never a panic, never a temp file
//! left behind); binaries that were deleted, replaced by another build, or live only in the
//! target's own mount namespace must still be named from the code the target really runs; odd
//! but legitimate processes (main thread exited, names that are not UTF-8) are profiled like any
//! other; and a PID reused mid-window never lets the newcomer into the profile. (Scale and
//! locked-memory limits: limits.rs; churn: churn.rs.)

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rprof_integration::elf::build_id;
use rprof_integration::{
    agent_bin, assert_one_line_error, assert_success, build_c, exclusive_cpu, files_in, is_root,
    label, leaf_share, read_profile, record, run_agent, share_of, top_leaves, total_samples,
    Finished, Running, Target,
};

const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

fn run(args: &[&str]) -> Finished {
    run_agent(args, AGENT_TIMEOUT)
}

#[test]
fn nonsense_flags_are_refused_in_one_line() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["record", "--pid", "1", "--seconds", "0"],
            &["--seconds", "'0'"],
        ),
        (
            &["record", "--pid", "1", "--seconds", "99999999"],
            &["--seconds", "99999999"],
        ),
        (&["record", "--pid", "1", "--seconds", "-5"], &["-5"]),
        (
            &["record", "--pid", "1", "-F", "0"],
            &["--frequency", "'0'"],
        ),
        (
            &["record", "--pid", "1", "-F", "abc"],
            &["--frequency", "abc"],
        ),
        (&["record", "--pid", "-1"], &["-1"]),
        (&["record", "--pid", "abc"], &["--pid", "abc"]),
        (&["record", "--pid", "99999999999"], &["--pid"]),
        (
            &["record", "--pid", "1", "--format", "xml"],
            &["--format", "xml"],
        ),
        (
            &["record", "--pid", "1", "--profile", "trace"],
            &["--profile", "trace"],
        ),
        (
            &["record", "--pid", "1", "--stack-size", "1"],
            &["--stack-size"],
        ),
        (&["record"], &[]),
        (&["threads", "--pid", "abc"], &["--pid", "abc"]),
        (&["threads", "--pid", "-1"], &["-1"]),
        (
            &["threads", "--pid", "1", "--format", "xml"],
            &["--format", "xml"],
        ),
        (
            &["serve", "--pid", "1", "--listen", "nowhere"],
            &["--listen"],
        ),
        (
            &["serve", "--pid", "1", "--max-seconds", "0"],
            &["--max-seconds"],
        ),
        (&["bogus"], &["bogus"]),
    ];
    for (args, words) in cases {
        let finished = run(args);
        assert_one_line_error(&finished, &format!("rprof-agent {}", args.join(" ")), words);
    }
}

#[test]
fn unwritable_outputs_fail_in_one_line_and_leave_nothing_behind() {
    let target = Target::spawn(&build_c("many_threads", &["-O2", "-g"]), &["1"]);
    let pid = target.pid().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the file should go: the temporary file can be written beside it, but
    // the rename over it fails, and the temporary file must be cleaned up.
    let occupied = dir.path().join("occupied");
    fs::create_dir(&occupied).expect("create occupied dir");
    let occupied = occupied.to_str().expect("utf-8 temp path");
    let cases: &[&[&str]] = &[
        &["record", "--seconds", "1", "-o", "/proc/nope/x.pb.gz"],
        &["record", "--seconds", "1", "-o", "/nonexistent/dir/x"],
        &["record", "--seconds", "1", "-o", occupied],
        &["threads", "--format", "pprof", "-o", "/nonexistent/dir/x"],
        &["threads", "-o", "/proc/nope/x.txt"],
        &["threads", "--format", "json", "-o", occupied],
    ];
    for case in cases {
        let mut args = vec![case[0], "--pid", &pid];
        args.extend_from_slice(&case[1..]);
        let finished = run(&args);
        let output = case[case.len() - 1];
        assert_one_line_error(
            &finished,
            &format!("rprof-agent {}", args.join(" ")),
            &["cannot write", output],
        );
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("read temp dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        assert_eq!(
            left,
            vec![OsString::from("occupied")],
            "rprof-agent {} left files behind",
            args.join(" ")
        );
        assert!(
            fs::read_dir(occupied)
                .expect("read occupied")
                .next()
                .is_none(),
            "rprof-agent {} wrote into the directory named by -o",
            args.join(" ")
        );
    }
    assert!(!target.has_exited(), "the target died");
}

#[test]
fn zombies_kernel_threads_and_missing_pids_are_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("zombie.pid");
    let parent = Target::spawn(&build_c("zombie_parent", &["-O2", "-g"]), &[&pid_file]);
    let zombie = fs::read_to_string(&pid_file).expect("zombie pid file");
    let zombie = zombie.trim();
    let stat = fs::read_to_string(format!("/proc/{zombie}/stat")).expect("zombie stat");
    assert!(stat.contains(") Z "), "not a zombie: {stat}");
    let out = dir.path().join("z.pb.gz");
    let out = out.to_str().expect("utf-8 temp path");
    for args in [
        vec!["record", "--pid", zombie, "--seconds", "1", "-o", out],
        vec!["threads", "--pid", zombie],
        vec!["threads", "--pid", zombie, "--nonblocking"],
        vec!["threads", "--pid", zombie, "--format", "pprof", "-o", out],
        vec!["serve", "--pid", zombie, "--listen", "127.0.0.1:0"],
    ] {
        let finished = run(&args);
        assert_one_line_error(
            &finished,
            &format!("rprof-agent {}", args.join(" ")),
            &["zombie", zombie],
        );
    }
    assert!(
        !Path::new(out).exists(),
        "a profile of a zombie was written"
    );
    drop(parent);

    // PID 2 is kthreadd on every Linux system.
    for args in [
        vec!["threads", "--pid", "2"],
        vec!["record", "--pid", "2", "--seconds", "1", "-o", out],
        // serve used to accept it and serve empty profiles forever.
        vec!["serve", "--pid", "2", "--listen", "127.0.0.1:0"],
    ] {
        let finished = run(&args);
        assert_one_line_error(
            &finished,
            &format!("rprof-agent {}", args.join(" ")),
            &["kernel thread"],
        );
    }
    // Above any pid_max the kernel allows (2^22).
    for args in [
        vec!["threads", "--pid", "99999999"],
        vec!["record", "--pid", "99999999", "--seconds", "1", "-o", out],
        vec!["threads", "--pid", "0"],
    ] {
        let finished = run(&args);
        assert_one_line_error(
            &finished,
            &format!("rprof-agent {}", args.join(" ")),
            &["no such process"],
        );
    }
}

/// `hide_spin` copied to `dir/prog`, so that the test may delete or replace it.
fn private_copy(dir: &Path) -> PathBuf {
    let prog = dir.join("prog");
    fs::copy(build_c("hide_spin", C_FLAGS), &prog).expect("copy hide_spin");
    prog
}

/// Records `target` for 2 s and checks that its samples are named from the original build.
fn assert_named_from_original(target: &Target) {
    let (profile, _, stderr) = record(target.pid(), 2, &[]);
    let leaf = leaf_share(&profile, "original_leaf");
    assert!(
        leaf > 0.5,
        "original_leaf is the leaf of {:.0}% of samples; top leaves:\n{}\n--- stderr\n{stderr}",
        leaf * 100.0,
        top_leaves(&profile, 8)
    );
    assert!(
        share_of(&profile, "spin_caller") > 0.5,
        "spin_caller is missing from the stacks; top leaves:\n{}",
        top_leaves(&profile, 8)
    );
    assert_eq!(
        share_of(&profile, "impostor_leaf"),
        0.0,
        "names were read from the replacement file"
    );
}

#[test]
fn process_whose_main_thread_exited_is_profiled_through_its_live_threads() {
    let _cpu = exclusive_cpu();
    agent_bin();
    let target = Target::start(&build_c(
        "main_exits",
        &["-O2", "-g", "-fomit-frame-pointer"],
    ));
    let pid = target.pid().to_string();
    // The premise: the main thread is a zombie and the process-wide maps read empty.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
    }) {
        assert!(
            Instant::now() < deadline,
            "the main thread of main_exits did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(),
        "",
        "the premise failed: /proc/PID/maps is readable with the main thread gone"
    );

    let (profile, stdout, stderr) = record(target.pid(), 2, &[]);
    println!("{stdout}");
    let total = total_samples(&profile);
    let leaf = leaf_share(&profile, "burn_leaf");
    assert!(
        total >= 100 && leaf >= 0.9,
        "{total} samples, {:.0} % in burn_leaf\n{}\n--- stderr\n{stderr}",
        100.0 * leaf,
        top_leaves(&profile, 10)
    );
    assert!(
        share_of(&profile, "start_thread") >= 0.95,
        "the burner's stacks do not reach start_thread\n{}",
        top_leaves(&profile, 10)
    );
    let labeled = profile
        .sample
        .iter()
        .filter(|s| label(&profile, s, "thread") == Some("burner"))
        .count();
    assert!(labeled > 0, "no sample is labeled thread=burner");

    let dump = run_agent(&["threads", "--pid", &pid], Duration::from_secs(30));
    assert_success(
        &dump,
        "rprof-agent threads on a process whose main thread exited",
    );
    assert!(
        dump.stdout.contains("[zombie") && dump.stdout.contains("\"burner\" [running"),
        "the dump does not show the exited main thread and the running burner:\n{}",
        dump.stdout
    );
    assert!(
        dump.stdout.contains("burn_leaf") && dump.stdout.contains("exited: no stack left"),
        "the burner has no named stack, or the main thread no explanation:\n{}",
        dump.stdout
    );
}

#[test]
fn names_and_paths_that_are_not_utf8_are_profiled() {
    use std::os::unix::ffi::OsStrExt;
    let _cpu = exclusive_cpu();
    agent_bin();
    let dir = tempfile::tempdir().expect("create a directory");
    let built = build_c(
        "churn_plugin",
        &[
            "-O2",
            "-g",
            "-shared",
            "-fPIC",
            "-DPLUGIN_BURN=odd_plugin_burn",
        ],
    );
    let plugin = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"lib\xe9t\xff.so"));
    fs::copy(&built, &plugin).expect("copy the plugin to a non-UTF-8 path");
    let target = Target::spawn(&build_c("odd_names", &["-O2", "-g"]), &[&plugin]);
    let pid = target.pid().to_string();
    let maps = fs::read(format!("/proc/{pid}/maps")).expect("read the maps");
    assert!(
        std::str::from_utf8(&maps).is_err(),
        "the premise failed: the maps are valid UTF-8"
    );

    let (profile, stdout, stderr) = record(target.pid(), 2, &[]);
    println!("{stdout}");
    let leaf = leaf_share(&profile, "odd_plugin_burn");
    assert!(
        total_samples(&profile) >= 100 && leaf >= 0.9,
        "{} samples, {:.0} % in odd_plugin_burn\n{}\n--- stderr\n{stderr}",
        total_samples(&profile),
        100.0 * leaf,
        top_leaves(&profile, 10)
    );
    let thread = profile
        .sample
        .iter()
        .find_map(|s| label(&profile, s, "thread"))
        .unwrap_or_default();
    assert!(thread.starts_with("caf"), "thread label {thread:?}");

    let dump = run_agent(&["threads", "--pid", &pid], Duration::from_secs(30));
    assert_success(
        &dump,
        "rprof-agent threads on a process with a non-UTF-8 name",
    );
    assert!(
        dump.stdout.contains("odd_plugin_burn"),
        "the dump does not name the plugin's frame:\n{}",
        dump.stdout
    );
}

#[test]
fn deleted_binary_is_still_named() {
    let _cpu = exclusive_cpu();
    let dir = tempfile::tempdir().expect("temp dir");
    let prog = private_copy(dir.path());
    let target = Target::start(&prog);
    fs::remove_file(&prog).expect("delete the running binary");
    assert_named_from_original(&target);
}

#[test]
fn replaced_binary_is_not_used_for_names() {
    let _cpu = exclusive_cpu();
    let dir = tempfile::tempdir().expect("temp dir");
    let prog = private_copy(dir.path());
    let target = Target::start(&prog);
    // Installers replace binaries by rename (writing a running one fails with ETXTBSY).
    let impostor = build_c(
        "hide_spin",
        &["-O2", "-fomit-frame-pointer", "-g", "-DLEAF=impostor_leaf"],
    );
    let staged = dir.path().join("prog.new");
    fs::copy(&impostor, &staged).expect("copy impostor");
    fs::rename(&staged, &prog).expect("replace the running binary");
    let (original_id, impostor_id) = (build_id(&build_c("hide_spin", C_FLAGS)), build_id(&prog));
    assert!(original_id.is_some(), "hide_spin has no build-id");
    assert_ne!(original_id, impostor_id, "the two builds share a build-id");
    assert_named_from_original(&target);
}

#[test]
fn binary_in_a_private_mount_namespace_is_named() {
    let _cpu = exclusive_cpu();
    let dir = tempfile::tempdir().expect("temp dir");
    let prog = build_c("hide_spin", C_FLAGS);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).expect("create mount point");
    // The tmpfs, and the binary on it, exist only in the target's mount namespace.
    let script = r#"mount -t tmpfs rprof-hostile "$1" && cp "$2" "$1/prog" && exec "$1/prog""#;
    let args: Vec<OsString> = vec![
        "-m".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        mnt.clone().into(),
        prog.into(),
    ];
    let target = Target::spawn(Path::new("unshare"), &args);
    let exe = fs::read_link(format!("/proc/{}/exe", target.pid())).expect("read target exe");
    assert_eq!(exe, mnt.join("prog"), "the target is not the private copy");
    assert!(
        !mnt.join("prog").exists(),
        "the private tmpfs is visible outside the target's namespace"
    );
    assert_named_from_original(&target);
}

// ---------------------------------------------------------------------------------------------
// PID reuse
// ---------------------------------------------------------------------------------------------

/// Runs in a new PID namespace (as its PID 1, with its own /proc): a program, `record --pid` on
/// it, then the program killed and the very same PID handed to an impostor, all while the agent
/// is stopped (so that its next look at the target is certainly at the impostor). Inside the
/// namespace nothing else runs, so writing ns_last_pid = PID - 1 just before the fork gives
/// the impostor that PID every time; the agent must run inside too, since the PID names the
/// impostor only there.
const PID_REUSE_SCRIPT: &str = r#"
set -u
first_prog=$1 impostor_prog=$2 agent=$3 dir=$4
wait_ready() { i=0; until grep -q ready "$1" 2>/dev/null; do i=$((i+1)); [ $i -lt 600 ] || exit 90; sleep 0.05; done; }
"$first_prog" > "$dir/first.out" &
first=$!
wait_ready "$dir/first.out"
"$agent" record --pid "$first" --seconds 20 -o "$dir/cpu.pb.gz" --top 0 \
    > "$dir/agent.out" 2> "$dir/agent.err" &
agent=$!
sleep 2
kill -STOP "$agent"
kill -KILL "$first"
wait "$first"
echo $((first - 1)) > /proc/sys/kernel/ns_last_pid
"$impostor_prog" > "$dir/impostor.out" &
second=$!
echo "$first $second" > "$dir/pids"
wait_ready "$dir/impostor.out"
sleep 0.5
kill -CONT "$agent"
wait "$agent"
echo $? > "$dir/agent.rc"
kill -KILL "$second"
"#;

/// The target exits and its PID goes to another program mid-window: the agent must not carry
/// on with the newcomer. It ends the window as for any exit — "(target exited)", exit 0, the
/// profile written atomically — says in one line that the PID now belongs to another process,
/// and the profile holds the first program's code only.
#[test]
fn pid_reused_mid_window_ends_the_recording() {
    assert!(
        is_root(),
        "the PID-reuse test must run as root (unshare --pid, ns_last_pid)"
    );
    let _cpu = exclusive_cpu();
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first");
    fs::copy(build_c("hide_spin", C_FLAGS), &first).expect("copy hide_spin");
    // A name of its own, so that a thread label read from the impostor would show.
    let impostor = dir.path().join("impostor");
    fs::copy(
        build_c(
            "hide_spin",
            &["-O2", "-fomit-frame-pointer", "-g", "-DLEAF=impostor_leaf"],
        ),
        &impostor,
    )
    .expect("copy the impostor");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        PID_REUSE_SCRIPT,
        "sh",
    ])
    .arg(&first)
    .arg(&impostor)
    .arg(agent_bin())
    .arg(dir.path());
    let script = Running::spawn(cmd, "the PID-reuse script").finish(Duration::from_secs(90));
    let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let context = format!(
        "script: {:?}\n{}\n--- agent stdout\n{}\n--- agent stderr\n{}",
        script.status,
        script.stderr,
        read("agent.out"),
        read("agent.err")
    );
    assert_success(&script, "the PID-reuse script");
    let pids: Vec<u32> = read("pids")
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    assert!(
        pids.len() == 2 && pids[0] == pids[1],
        "the impostor did not get the target's PID ({pids:?}): the test could not force reuse\n{context}"
    );
    let pid = pids[0];
    assert_eq!(read("agent.rc").trim(), "0", "agent exit status\n{context}");
    let stdout = read("agent.out");
    assert!(
        stdout.starts_with("wrote ") && stdout.contains("(target exited)"),
        "the window did not end with the target's exit\n{context}"
    );
    let stderr = read("agent.err");
    assert!(!stderr.contains("panicked"), "{context}");
    let reuse_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| {
            line.contains(&format!(
                "PID {pid} exited and now belongs to another process"
            ))
        })
        .collect();
    assert_eq!(
        reuse_lines.len(),
        1,
        "not one line about the reuse\n{context}"
    );
    assert!(reuse_lines[0].contains("(impostor)"), "{context}");

    let profile = read_profile(&dir.path().join("cpu.pb.gz"));
    let samples = total_samples(&profile);
    assert!(
        samples >= 50,
        "only {samples} samples of the first program\n{context}"
    );
    assert!(
        leaf_share(&profile, "original_leaf") > 0.8,
        "original_leaf is not the leaf of most samples; top leaves:\n{}\n{context}",
        top_leaves(&profile, 8)
    );
    assert_eq!(
        share_of(&profile, "impostor_leaf"),
        0.0,
        "the impostor was profiled under the target's PID\n{context}"
    );
    let names: std::collections::HashSet<&str> = profile
        .sample
        .iter()
        .filter_map(|sample| label(&profile, sample, "thread"))
        .collect();
    assert!(
        !names.contains("impostor"),
        "a thread name was read from the impostor: {names:?}"
    );
    let leftovers: Vec<_> = files_in(dir.path())
        .into_iter()
        .filter(|name| name.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
