//! Where `-o` writes, for `record` and `threads`: a regular file is replaced atomically, `-`
//! is standard output, anything else (a device, a FIFO, a link to /dev/stdout) is written to
//! and left what it was, and a link planted at a temporary name is never followed.

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::MutexGuard;
use std::thread;
use std::time::Duration;

use rprof_integration::{
    agent_bin, agent_command, assert_one_line_error, assert_success, decode_profile, exclusive_cpu,
    files_in, programs, run_agent, Finished, Running, Target,
};

const AGENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The null device's numbers (Documentation/admin-guide/devices.txt).
const NULL_MAJOR: u32 = 1;
const NULL_MINOR: u32 = 3;

/// The two verbs that write a profile to `-o`.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Record,
    Threads,
}

const VERBS: [Verb; 2] = [Verb::Record, Verb::Threads];

impl Verb {
    /// The agent's arguments to profile `pid` into `output`.
    fn args(self, pid: u32, output: &OsStr) -> Vec<OsString> {
        let pid = pid.to_string();
        let args: &[&str] = match self {
            Verb::Record => &["record", "--pid", &pid, "--seconds", "1", "-o"],
            Verb::Threads => &["threads", "--pid", &pid, "--format", "pprof", "-o"],
        };
        let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
        args.push(output.to_owned());
        args
    }

    fn run(self, pid: u32, output: impl AsRef<OsStr>) -> Finished {
        let finished = run_agent(&self.args(pid, output.as_ref()), AGENT_TIMEOUT);
        assert_success(&finished, &format!("{self:?} -o {:?}", output.as_ref()));
        finished
    }

    fn start(self, pid: u32, output: impl AsRef<OsStr>) -> Running {
        Running::spawn(
            agent_command(&self.args(pid, output.as_ref())),
            "rprof-agent",
        )
    }
}

/// The CPU lock, the agent built, and a target to profile.
fn setup() -> (MutexGuard<'static, ()>, Target) {
    let guard = exclusive_cpu();
    agent_bin();
    (guard, Target::start(&programs::leaf_ratio()))
}

/// Panics unless `bytes` are a gzipped pprof profile with a sample type.
fn assert_profile(bytes: &[u8], what: &str) {
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]),
        "{what}: not a gzipped profile ({} bytes)",
        bytes.len()
    );
    let profile = decode_profile(bytes);
    assert!(!profile.sample_type.is_empty(), "{what}: no sample type");
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temporary path")
}

fn mknod_null(path: &Path) {
    let dev = libc::makedev(NULL_MAJOR, NULL_MINOR);
    // SAFETY: mknod reads a NUL-terminated path and numbers; it touches no memory of ours.
    let rc = unsafe { libc::mknod(c_path(path).as_ptr(), libc::S_IFCHR | 0o666, dev) };
    assert_eq!(
        rc,
        0,
        "mknod {} (the tests run as root): {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn mkfifo(path: &Path) {
    // SAFETY: mkfifo reads a NUL-terminated path; it touches no memory of ours.
    let rc = unsafe { libc::mkfifo(c_path(path).as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_character_device_is_written_to_and_stays_one() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let null = dir.path().join("null");
        mknod_null(&null);
        verb.run(target.pid(), &null);
        let meta = fs::symlink_metadata(&null).expect("the device is still there");
        assert!(
            meta.file_type().is_char_device(),
            "{verb:?}: {} is no longer a character device: {:?}",
            null.display(),
            meta.file_type()
        );
        assert_eq!(meta.rdev(), libc::makedev(NULL_MAJOR, NULL_MINOR));
        assert_eq!(files_in(dir.path()), ["null"], "{verb:?} left files behind");
    }
}

#[test]
fn a_fifo_gets_the_profile_and_stays_a_fifo() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fifo = dir.path().join("profile.fifo");
        mkfifo(&fifo);
        // Held open for writing until the agent is done, so the reader sees the end of the
        // stream then, and only then, whatever the agent did (even never opening the FIFO).
        let keeper = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .expect("open the FIFO read-write");
        let reader = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                let mut bytes = Vec::new();
                fs::File::open(&fifo)
                    .and_then(|mut file| file.read_to_end(&mut bytes))
                    .expect("read the FIFO");
                bytes
            })
        };
        let finished = run_agent(&verb.args(target.pid(), fifo.as_os_str()), AGENT_TIMEOUT);
        drop(keeper);
        let bytes = reader.join().expect("the reader thread");
        assert_success(&finished, &format!("{verb:?} -o FIFO"));
        assert_profile(&bytes, &format!("{verb:?}: what the FIFO's reader got"));
        let meta = fs::symlink_metadata(&fifo).expect("the FIFO is still there");
        assert!(meta.file_type().is_fifo(), "{verb:?}: {meta:?}");
        assert_eq!(files_in(dir.path()), ["profile.fifo"]);
    }
}

#[test]
fn a_link_to_dev_stdout_writes_to_stdout_and_stays_a_link() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let link = dir.path().join("out.pb.gz");
        std::os::unix::fs::symlink("/dev/stdout", &link).expect("symlink");
        let finished = verb.run(target.pid(), &link);
        assert_profile(&finished.stdout_bytes, &format!("{verb:?}: stdout"));
        assert_eq!(
            fs::read_link(&link).expect("still a link"),
            Path::new("/dev/stdout")
        );
        assert!(fs::symlink_metadata("/dev/stdout")
            .expect("/dev/stdout")
            .is_symlink());
        assert_eq!(files_in(dir.path()), ["out.pb.gz"]);
    }
}

#[test]
fn a_dash_writes_to_stdout_and_the_summary_to_stderr() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let finished = verb.run(target.pid(), "-");
        assert_profile(&finished.stdout_bytes, &format!("{verb:?}: stdout"));
        assert!(!Path::new("-").exists(), "{verb:?} created a file named -");
        if let Verb::Record = verb {
            assert!(
                finished.stderr.contains("wrote -: "),
                "the summary is not on stderr:\n{}",
                finished.stderr
            );
        }
    }
}

#[test]
fn a_regular_file_is_replaced_not_written_in_place() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = dir.path().join("out.pb.gz");
        fs::write(&out, b"old").expect("write the old profile");
        // A second name for the old file: written in place, it would change too.
        fs::hard_link(&out, dir.path().join("old.pb.gz")).expect("hard link");
        verb.run(target.pid(), &out);
        assert_profile(&fs::read(&out).expect("the new profile"), "the file");
        assert_eq!(fs::read(dir.path().join("old.pb.gz")).unwrap(), b"old");
        let mut files = files_in(dir.path());
        files.sort();
        assert_eq!(files, ["old.pb.gz", "out.pb.gz"], "{verb:?}");
    }
}

#[test]
fn a_link_to_a_regular_file_replaces_the_file_and_keeps_the_link() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("real.pb.gz");
        let link = dir.path().join("link.pb.gz");
        fs::write(&file, b"old").expect("write the old profile");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        verb.run(target.pid(), &link);
        assert_profile(&fs::read(&file).expect("the file"), "the linked file");
        assert_eq!(fs::read_link(&link).expect("still a link"), file);
        assert_eq!(files_in(dir.path()).len(), 2, "{verb:?} left files behind");
    }
}

/// The last PID the kernel handed out in this PID namespace.
fn last_pid() -> u32 {
    fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .expect("read ns_last_pid")
        .trim()
        .parse()
        .expect("ns_last_pid is a number")
}

#[test]
fn a_link_planted_at_the_old_temporary_name_is_not_followed() {
    let (_cpu, target) = setup();
    for verb in VERBS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let victim_dir = tempfile::tempdir().expect("a temporary directory");
        let victim = victim_dir.path().join("victim");
        fs::write(&victim, b"precious").expect("write the victim");
        let out = dir.path().join("out.pb.gz");
        let plant = |pid: u32| {
            let name = dir.path().join(format!(".out.pb.gz.tmp{pid}"));
            let _ = std::os::unix::fs::symlink(&victim, name);
        };
        // The agent's PID is known once it runs, which may be after a quick `threads` wrote:
        // plant the names of the next PIDs too.
        let next = last_pid() + 1;
        (next..next + 2000).for_each(plant);
        let agent = verb.start(target.pid(), &out);
        let agent_pid = agent.pid();
        plant(agent_pid);
        let finished = agent.finish(AGENT_TIMEOUT);
        assert_success(&finished, &format!("{verb:?}"));
        let planted = dir.path().join(format!(".out.pb.gz.tmp{agent_pid}"));
        assert_eq!(fs::read_link(&planted).expect("the planted link"), victim);
        assert_eq!(
            fs::read(&victim).expect("the victim"),
            b"precious",
            "{verb:?}"
        );
        assert_profile(&fs::read(&out).expect("the profile"), "the file");
        // Only the planted links and the profile: no temporary file left behind.
        let others: Vec<OsString> = files_in(dir.path())
            .into_iter()
            .filter(|name| !name.to_string_lossy().starts_with(".out.pb.gz.tmp"))
            .collect();
        assert_eq!(others, ["out.pb.gz"], "{verb:?}");
    }
}

#[test]
fn several_profiles_to_one_stream_are_refused() {
    let (_cpu, target) = setup();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let null = dir.path().join("null");
    mknod_null(&null);
    let pid = target.pid().to_string();
    let mut args: Vec<OsString> = ["record", "--pid", &pid, "--seconds", "1"]
        .iter()
        .map(OsString::from)
        .collect();
    args.extend(["--profile", "cpu,threadcreate", "-o"].map(OsString::from));
    args.push(null.clone().into());
    let finished = run_agent(&args, AGENT_TIMEOUT);
    assert_one_line_error(&finished, "two profiles to a device", &["several", "null"]);
    assert_eq!(files_in(dir.path()), ["null"]);
}

#[test]
fn stdout_is_refused_when_the_launched_command_writes_there_too() {
    agent_bin();
    for output in ["-", "/dev/stdout"] {
        let args = ["record", "--seconds", "1", "-o", output, "--", "true"];
        let finished = run_agent(&args, AGENT_TIMEOUT);
        assert_one_line_error(&finished, &args.join(" "), &["standard output", "launched"]);
    }
}
