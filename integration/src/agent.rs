//! The agent under test: built once per test process, run with deadlines.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use crate::process::{Finished, Running};
use crate::profile::decode_profile;
use crate::toolchain::{target_dir, workspace_root};
use rprof_proto::pb::Profile;

/// How long the agent may take beyond the recording itself: attaching, unwinding,
/// symbolizing, writing.
const AGENT_OVERHEAD: Duration = Duration::from_secs(60);

/// Builds `rprof-agent` in release mode (once per test process) and returns its path.
///
/// Release, because unwinding and symbolization speed decides how many samples a recording
/// keeps: a debug build would test a slower agent than the one users run.
pub fn agent_bin() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(build_agent).clone()
}

fn build_agent() -> PathBuf {
    // Cargo tells the tests which cargo runs them; a plain `cargo` is the fallback.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "rprof-agent", "--release"])
        .current_dir(workspace_root());
    let output = cmd
        .output()
        .unwrap_or_else(|err| panic!("run {cmd:?}: {err}"));
    assert!(
        output.status.success(),
        "building rprof-agent failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = target_dir().join("release").join("rprof-agent");
    assert!(
        binary.is_file(),
        "{} is missing after the build",
        binary.display()
    );
    binary
}

/// Serializes the tests that keep CPUs busy.
///
/// Every test program spins; on a two-core machine, several at once would starve the agent of
/// the CPU it needs to drain and unwind its samples. Hold the guard for the whole test.
pub fn exclusive_cpu() -> MutexGuard<'static, ()> {
    static CPU: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next test is still entitled to the CPU.
    CPU.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the CPU lock, then makes sure the agent is built before any program starts (a build
/// while a program runs would skew what it measures).
pub fn exclusive() -> MutexGuard<'static, ()> {
    let guard = exclusive_cpu();
    agent_bin();
    guard
}

/// A `Command` for the agent with `args`.
pub fn agent_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(agent_bin());
    cmd.args(args);
    cmd
}

/// Runs the agent with `args` to completion, allowing it `timeout`.
pub fn run_agent<S: AsRef<OsStr>>(args: &[S], timeout: Duration) -> Finished {
    Running::spawn(agent_command(args), "rprof-agent").finish(timeout)
}

/// A recording made by [`record_full`].
pub struct Recording {
    /// The profile file, as the agent wrote it.
    pub bytes: Vec<u8>,
    /// The profile, decoded.
    pub profile: Profile,
    pub stdout: String,
    pub stderr: String,
    /// How long the agent ran.
    pub elapsed: Duration,
    /// Wall-clock time when the agent was started.
    pub started_at: SystemTime,
}

/// Records `pid` for `seconds` with `rprof-agent record --pid PID --seconds S -o OUT EXTRA...`
/// and returns the profile, the agent's stdout and its stderr. Panics unless the agent exits 0.
pub fn record(pid: u32, seconds: u32, extra_args: &[&str]) -> (Profile, String, String) {
    let recording = record_full(pid, seconds, extra_args);
    (recording.profile, recording.stdout, recording.stderr)
}

/// Like [`record`], with everything known about the recording.
pub fn record_full(pid: u32, seconds: u32, extra_args: &[&str]) -> Recording {
    record_full_env(pid, seconds, extra_args, &[])
}

/// Like [`record_full`], the agent run with the variables `env` added to its environment.
pub fn record_full_env(
    pid: u32,
    seconds: u32,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> Recording {
    let dir = tempfile::tempdir().expect("create a directory for the profile");
    let out = dir.path().join("cpu.pb.gz");
    let mut args: Vec<OsString> = vec![
        "record".into(),
        "--pid".into(),
        pid.to_string().into(),
        "--seconds".into(),
        seconds.to_string().into(),
        "-o".into(),
        out.clone().into(),
    ];
    args.extend(extra_args.iter().map(OsString::from));
    let started_at = SystemTime::now();
    let mut cmd = agent_command(&args);
    cmd.envs(env.iter().copied());
    let finished = Running::spawn(cmd, "rprof-agent")
        .finish(Duration::from_secs(seconds.into()) + AGENT_OVERHEAD);
    assert_success(&finished, "rprof-agent record");
    let bytes = fs::read(&out).unwrap_or_else(|err| {
        panic!(
            "the agent exited 0 but {} is unreadable: {err}",
            out.display()
        )
    });
    Recording {
        profile: decode_profile(&bytes),
        bytes,
        stdout: finished.stdout,
        stderr: finished.stderr,
        elapsed: finished.elapsed,
        started_at,
    }
}

/// Panics with everything the command printed unless it exited 0.
pub fn assert_success(finished: &Finished, what: &str) {
    assert!(
        finished.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
}

/// The agent failed, said so in exactly one `error:` line mentioning every one of `words`, and
/// nothing panicked.
pub fn assert_one_line_error(finished: &Finished, what: &str, words: &[&str]) {
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
