//! Child processes that never outlive their test: the programs under test and the commands
//! the tests run (the agent, `go tool pprof`).

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a test program may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, after a command exits, its output may take to reach EOF. Longer only when the
/// command left a child of its own holding the pipes (the agent's launched program may).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A running test program. Killed when dropped.
///
/// The program is reaped as soon as it exits, as a shell would reap it: a test program that
/// exits during a recording must disappear from `/proc`, not linger as our zombie. The kill in
/// `Drop` goes through a pidfd so that it can never hit a recycled pid.
pub struct Target {
    pid: u32,
    path: PathBuf,
    pidfd: OwnedFd,
    reaper: Option<JoinHandle<io::Result<ExitStatus>>>,
    stdout_drain: Option<JoinHandle<()>>,
}

impl Target {
    /// Starts `path` without arguments and returns once it has printed its `ready` line.
    pub fn start(path: &Path) -> Target {
        Target::spawn::<&str>(path, &[])
    }

    /// Starts `path ARGS` and returns once it has printed its `ready` line.
    pub fn spawn<S: AsRef<OsStr>>(path: &Path, args: &[S]) -> Target {
        let mut child = spawn_retrying_busy_text(
            Command::new(path)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        )
        .unwrap_or_else(|err| panic!("start {}: {err}", path.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let pid = child.id();
        // Before the reaper starts, the pid cannot be reused: the child is ours and unreaped.
        let pidfd = pidfd_open(pid).unwrap_or_else(|err| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pidfd_open({pid}): {err}")
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut target = Target {
            pid,
            path: path.to_path_buf(),
            pidfd,
            reaper: Some(thread::spawn(move || child.wait())),
            stdout_drain: Some(thread::spawn(move || drain_stdout(stdout, ready_tx))),
        };
        target.wait_ready(&ready_rx);
        target
    }

    fn wait_ready(&mut self, ready: &mpsc::Receiver<String>) {
        let name = self.path.display();
        match ready.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.trim_end() == "ready" => {}
            Ok(line) => panic!("{name} printed {line:?} instead of \"ready\""),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} did not print \"ready\" within {READY_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.reaper.take().map(|reaper| reaper.join());
                panic!("{name} exited before printing \"ready\": {status:?}")
            }
        }
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The program's path, as started.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CPU time the program has used so far, all threads included.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid)
    }

    /// Whether the program has exited (and been reaped).
    pub fn has_exited(&self) -> bool {
        self.reaper.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

/// Spawns `command`, retrying while its executable is "busy" (ETXTBSY): a test that has just
/// written a copy of a program can see another test's child, forked while the copy was open
/// for writing, still hold that descriptor until it execs.
fn spawn_retrying_busy_text(command: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                attempts += 1;
                thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // ESRCH (already exited) is the only expected failure, and harmless.
        let _ = pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.join();
        }
        // The pipe reaches EOF once the program is dead.
        if let Some(drain) = self.stdout_drain.take() {
            let _ = drain.join();
        }
    }
}

/// Whether process `pid` still runs: it exists and is not a zombie (a killed orphan stays one
/// until init reaps it).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, state)| state.trim_start().starts_with('Z'))
    })
}

/// The CPU time (user + system) process `pid` has used so far, all threads included.
///
/// What a CPU profile's sample count should be measured against: on a loaded machine a target
/// gets less than the wall-clock time, and so yields fewer samples through no fault of the
/// profiler.
pub fn cpu_time(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    // Field 2, the command name, is in parentheses and may hold spaces: count from after it.
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks = |index: usize| -> u64 {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .unwrap_or_else(|| panic!("{path} has no field {}: {stat}", index + 3))
    };
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(
        ticks_per_second > 0,
        "sysconf(_SC_CLK_TCK) = {ticks_per_second}"
    );
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / ticks_per_second as f64)
}

/// Sends the first line of `stdout` to `ready`, then keeps reading so that the program can
/// never block on, or die of, a full or closed pipe.
fn drain_stdout(stdout: ChildStdout, ready: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    if reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        let _ = ready.send(line);
    }
    drop(ready);
    let _ = io::copy(&mut reader, &mut io::sink());
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).expect("file descriptors fit in an int");
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: the pidfd is open for the duration of the call; a null siginfo is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A command running with its stdout and stderr captured. Killed if dropped unfinished.
pub struct Running {
    what: String,
    child: Child,
    started: Instant,
    stdout: Capture,
    stderr: Capture,
}

/// How a [`Running`] command ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    /// Standard output as written, for commands that write binary data there.
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    /// From the start of the command to its exit (to within the polling interval).
    pub elapsed: Duration,
}

impl Running {
    /// Starts `cmd`, capturing its output; `what` names it in panics.
    pub fn spawn(mut cmd: Command, what: &str) -> Running {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("start {what} ({cmd:?}): {err}"));
        // Read both pipes concurrently, or a chatty command blocks on the one not being read.
        let stdout = Capture::start(child.stdout.take().expect("stdout is piped"));
        let stderr = Capture::start(child.stderr.take().expect("stderr is piped"));
        Running {
            what: what.to_owned(),
            started: Instant::now(),
            stdout,
            stderr,
            child,
        }
    }

    /// The command's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the command.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit in pid_t");
        // SAFETY: kill has no memory-safety preconditions. The pid is still ours: the child is
        // only reaped by `finish`, which takes `self`.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Waits for the command to exit, panicking (after killing it) if it runs past `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let status = self.wait_until(self.started + timeout);
        let elapsed = self.started.elapsed();
        let status = status
            .unwrap_or_else(|| panic!("{} still runs after {timeout:?}; killed it", self.what));
        let grace_end = Instant::now() + OUTPUT_GRACE;
        let stdout_bytes = self.stdout.collect(grace_end);
        Finished {
            status,
            elapsed,
            stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
            stdout_bytes,
            stderr: String::from_utf8_lossy(&self.stderr.collect(grace_end)).into_owned(),
        }
    }

    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(err) => panic!("wait for {}: {err}", self.what),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Harmless once reaped: std does not signal a child it has already waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe being read to its end by a thread of its own.
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl Capture {
    fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                lock(&sink).extend_from_slice(&chunk[..n]);
            }
        });
        Capture { bytes, reader }
    }

    /// What was read by EOF, or by `deadline` if a grandchild still holds the pipe open.
    fn collect(&self, deadline: Instant) -> Vec<u8> {
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        lock(&self.bytes).clone()
    }
}

fn lock(bytes: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    bytes.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the tests run as root (what the tests that run things as other users need).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `setpriv` arguments that run what follows as an unprivileged user (uid and gid 65533, no
/// groups): one that may ptrace its own processes but, at `perf_event_paranoid` ≥ 2, not
/// sample the kernel.
pub const AS_UNPRIVILEGED: [&str; 6] = [
    "--reuid",
    "65533",
    "--regid",
    "65533",
    "--clear-groups",
    "--",
];

/// Asserts what a test of kernel-sampling refusals needs: root, to run its programs as
/// [`AS_UNPRIVILEGED`], and a `perf_event_paranoid` that refuses kernel samples to that user.
pub fn require_kernel_sampling_refused() {
    assert!(
        is_root(),
        "this test runs the target and the agent as another user: run the tests as root"
    );
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .expect("read kernel.perf_event_paranoid");
    assert!(
        paranoid.trim().parse::<i32>().unwrap_or(2) >= 2,
        "kernel.perf_event_paranoid is below 2 here: any user may sample the kernel, so the \
         refusal cannot be tested"
    );
}

/// The names of the files in `dir`.
pub fn files_in(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name())
        .collect()
}

/// Every thread of `pid` is running or sleeping as usual: none in stopped or tracing stop, none
/// traced by anybody.
pub fn assert_nothing_stopped(pid: u32) {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let task = entry.expect("task entry").path();
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let state = field("State:");
        assert!(
            !state.starts_with('t') && !state.starts_with('T'),
            "{} left in state {state}",
            task.display()
        );
        assert_eq!(field("TracerPid:"), "0", "{} still traced", task.display());
    }
}
