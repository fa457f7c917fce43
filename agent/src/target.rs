//! The process being recorded: an existing PID, or a command we launch held at the door until
//! the sampler is attached, so its first instruction is already profiled.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A process under recording.
pub struct Target {
    pid: u32,
    launched: Option<Launched>,
}

struct Launched {
    child: Child,
    /// Closing (or writing to) this lets the child proceed to exec.
    gate: Option<OwnedFd>,
    exited: bool,
}

impl Target {
    /// An existing process, checked to be there and alive.
    pub fn attach(pid: u32) -> Result<Self> {
        check_pid(pid)?;
        Ok(Target {
            pid,
            launched: None,
        })
    }

    /// Forks `command`, leaving the child blocked before exec until [`Target::start`].
    pub fn launch(command: &[String]) -> Result<Self> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| anyhow!("no command to launch"))?;
        let (gate_read, gate_write) = nix::unistd::pipe().context("pipe")?;
        let (read_fd, write_fd) = (gate_read.as_raw_fd(), gate_write.as_raw_fd());
        let mut cmd = Command::new(program);
        cmd.args(args);
        // SAFETY: runs in the forked child before exec; only async-signal-safe calls (close, read)
        // on two fds that stay valid for the child's lifetime until exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(write_fd);
                let mut byte = 0u8;
                // Returns when the parent writes the go byte or closes its end (it died).
                libc::read(read_fd, (&raw mut byte).cast(), 1);
                libc::close(read_fd);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        drop(gate_read);
        Ok(Target {
            pid: child.id(),
            launched: Some(Launched {
                child,
                gate: Some(gate_write),
                exited: false,
            }),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn is_launched(&self) -> bool {
        self.launched.is_some()
    }

    /// Lets a launched command run (no-op for an attached process).
    pub fn start(&mut self) {
        if let Some(gate) = self.launched.as_mut().and_then(|l| l.gate.take()) {
            let mut file = std::fs::File::from(gate);
            let _ = file.write_all(b"g");
        }
    }

    /// Whether the process still runs (not gone, not a zombie).
    pub fn alive(&mut self) -> bool {
        match &mut self.launched {
            Some(launched) => {
                if !launched.exited {
                    launched.exited = !matches!(launched.child.try_wait(), Ok(None));
                }
                !launched.exited
            }
            None => process_state(self.pid).is_some_and(|state| !matches!(state, 'Z' | 'X')),
        }
    }

    /// Ends a launched command that outlived the recording window: SIGTERM, then SIGKILL after
    /// a grace period. An attached process is never touched.
    pub fn finish(&mut self) {
        let Some(launched) = &mut self.launched else {
            return;
        };
        launched.gate = None;
        if launched.exited || !matches!(launched.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(launched.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = launched.child.kill();
        let _ = launched.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Checks that `pid` names a live user process, with an actionable message otherwise.
pub fn check_pid(pid: u32) -> Result<()> {
    if pid == 0 {
        bail!("no such process: PID 0 is not a process");
    }
    match process_state(pid) {
        None => bail!(
            "no such process: PID {pid} (check the PID, and that /proc shows this PID namespace)"
        ),
        Some('Z') => {
            bail!("process {pid} is a zombie: it has exited and has no code left to profile")
        }
        Some('X') => bail!("process {pid} is exiting"),
        Some(_) => Ok(()),
    }
}

/// The one-letter state from /proc/PID/stat, None if the process does not exist.
pub fn process_state(pid: u32) -> Option<char> {
    let mut stat = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .take(4096)
        .read_to_string(&mut stat)
        .ok()?;
    // The command name is in parentheses and may itself contain ") ": the state follows the last.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().next()?.chars().next()
}
