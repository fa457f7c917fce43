//! Hostile targets and bad input: nonsense flags, unwritable outputs, zombies and kernel threads
//! must each cost one clear error line and a non-zero exit (never a panic, never a temp file
//! left behind); binaries that were deleted, replaced by another build, or live only in the
//! target's own mount namespace must still be named from the code the target really runs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rprof_integration::elf::build_id;
use rprof_integration::{
    assert_success, build_c, exclusive_cpu, leaf_share, record, run_agent, share_of, top_leaves,
    Finished, Target,
};

const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

/// The agent failed, said so in exactly one `error:` line mentioning every one of `words`, and
/// nothing panicked.
fn assert_one_line_error(finished: &Finished, what: &str, words: &[&str]) {
    let output = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        finished.stdout, finished.stderr
    );
    assert!(!finished.status.success(), "{what}: exited 0\n{output}");
    assert!(!output.contains("panicked"), "{what}: panicked\n{output}");
    let errors: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| line.starts_with("error:") || line.starts_with("rprof-agent: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{what}: not one error line\n{output}");
    let line = errors[0].to_lowercase();
    for word in words {
        assert!(
            line.contains(&word.to_lowercase()),
            "{what}: the error line does not mention {word:?}\n{output}"
        );
    }
}

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
            &["record", "--pid", "1", "--profile", "heap"],
            &["--profile", "heap"],
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

#[test]
fn thousand_threads_are_all_snapshotted() {
    let target = Target::spawn(&build_c("many_threads", &["-O2", "-g"]), &["1000"]);
    let finished = run_agent(
        &["threads", "--pid", &target.pid().to_string()],
        Duration::from_secs(60),
    );
    assert_success(&finished, "rprof-agent threads on 1001 threads");
    let header = finished.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains(": 1001 threads") && header.contains("paused"),
        "unexpected header: {header}"
    );
    let blocks = finished
        .stdout
        .lines()
        .filter(|line| line.starts_with("thread "))
        .count();
    assert_eq!(blocks, 1001, "not every thread was dumped");
    let stacks = finished.stdout.matches("pthread_cond_wait").count();
    assert!(
        stacks >= 990,
        "only {stacks} of 1000 parked threads have a stack through pthread_cond_wait"
    );
    // One event per thread and CPU: 2000+ events must open and close cleanly.
    let (_, stdout, stderr) = record(target.pid(), 1, &["--top", "0"]);
    assert!(
        stdout.starts_with("wrote "),
        "record on 1001 threads said:\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(!target.has_exited(), "the target died");
}
