//! Launching a command held at the door: forked, but blocked before `exec` until the profiler is
//! attached, so the program's first instruction is already sampled (what `perf record -- cmd`
//! does). `std::process::Command` can't do this: its `spawn` waits for the exec to happen.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// How long a launched command gets to exit after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// A forked child waiting for [`GatedChild::release`] to exec the command.
pub struct GatedChild {
    pid: Pid,
    program: String,
    /// Writing a byte here lets the child exec; closing it without one makes it exit.
    gate: Option<OwnedFd>,
    /// Closed by a successful exec (CLOEXEC); carries the errno of a failed one.
    exec_error: Option<OwnedFd>,
    exited: bool,
}

impl GatedChild {
    pub fn spawn(command: &[String]) -> Result<Self> {
        let program = command
            .first()
            .ok_or_else(|| anyhow!("no command to launch"))?;
        let argv: Vec<CString> = command
            .iter()
            .map(|a| {
                CString::new(a.as_bytes())
                    .with_context(|| format!("argument {a:?} contains a NUL byte"))
            })
            .collect::<Result<_>>()?;
        // Everything the child needs is allocated before fork: after it, only async-signal-safe
        // calls are allowed in the child.
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let (gate_read, gate_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        let (error_read, error_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        // SAFETY: the child branch only calls async-signal-safe functions (close, read, execvp,
        // write, _exit) on memory allocated before the fork, and never returns.
        match unsafe { nix::unistd::fork() }.context("fork")? {
            ForkResult::Child => unsafe {
                child_after_fork(
                    gate_read.as_raw_fd(),
                    gate_write.as_raw_fd(),
                    error_write.as_raw_fd(),
                    argv_ptrs.as_ptr(),
                )
            },
            ForkResult::Parent { child } => Ok(GatedChild {
                pid: child,
                program: program.clone(),
                gate: Some(gate_write),
                exec_error: Some(error_read),
                exited: false,
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Lets the child exec, and reports whether the exec worked.
    pub fn release(&mut self) -> Result<()> {
        if let Some(gate) = self.gate.take() {
            std::fs::File::from(gate)
                .write_all(b"g")
                .context("cannot release the launched command")?;
        }
        let Some(error) = self.exec_error.take() else {
            return Ok(());
        };
        let mut errno = [0u8; 4];
        match std::fs::File::from(error).read(&mut errno) {
            Ok(4) => {
                self.reap();
                let err = std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
                bail!("cannot run {}: {err}", self.program)
            }
            _ => Ok(()),
        }
    }

    /// Whether the command was seen exit and reaped: its PID may name another process since.
    pub fn is_reaped(&self) -> bool {
        self.exited
    }

    /// Whether the command has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        if !self.exited {
            self.exited = !matches!(
                waitpid(self.pid, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive)
            );
        }
        self.exited
    }

    /// SIGTERM, then SIGKILL after a grace period; always reaps.
    pub fn terminate(&mut self) {
        self.gate = None;
        if self.exited() {
            return;
        }
        let _ = kill(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(self.pid, Signal::SIGKILL);
        self.reap();
    }

    fn reap(&mut self) {
        let _ = waitpid(self.pid, None);
        self.exited = true;
    }
}

impl Drop for GatedChild {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The child's side: wait for the go byte, exec; on failure report errno and exit 127.
///
/// # Safety
/// Must only be called in a freshly forked child; `argv` is a NULL-terminated array of valid C
/// strings allocated before the fork.
unsafe fn child_after_fork(
    gate_read: i32,
    gate_write: i32,
    error_write: i32,
    argv: *const *const libc::c_char,
) -> ! {
    unsafe {
        libc::close(gate_write);
        let mut byte = 0u8;
        // 0 bytes: the agent died before releasing us; don't run unprofiled.
        if libc::read(gate_read, (&raw mut byte).cast(), 1) != 1 {
            libc::_exit(127);
        }
        libc::close(gate_read);
        libc::execvp(*argv, argv);
        let errno = *libc::__errno_location();
        libc::write(error_write, (&raw const errno).cast(), 4);
        libc::_exit(127);
    }
}
/// `program` as execvp would find it: a path if it has a slash, else the first executable
/// file of that name in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
