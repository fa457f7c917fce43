//! The process being recorded: an existing PID, or a command we launch held at the door until
//! the sampler is attached, so its first instruction is already profiled.

use anyhow::{bail, Result};

use crate::launch::GatedChild;
use crate::proc::{is_kernel_thread, process_stat};
use crate::process_identity::ProcessHandle;

/// A process under recording.
pub struct Target {
    pid: u32,
    launched: Option<GatedChild>,
    /// The attached process itself (a pidfd), so that a PID reused by another program while the
    /// window runs is never taken for the target. A launched command needs none: it is our
    /// unreaped child, whose PID cannot be reused.
    attached: Option<ProcessHandle>,
    /// Whether the exit (and any reuse of the PID) was reported.
    exit_reported: bool,
    /// Started by the launched command: ended with it when the window ends.
    started_by_command: bool,
}

impl Target {
    /// An existing process, checked to be there and alive.
    pub fn attach(pid: u32) -> Result<Self> {
        // Held before the checks: they read /proc/PID, which must be about this process.
        let handle = ProcessHandle::open(pid);
        check_pid(pid)?;
        let Some(handle) = handle.filter(ProcessHandle::is_alive) else {
            bail!("no such process: PID {pid} exited just now");
        };
        Ok(Target {
            pid,
            launched: None,
            attached: Some(handle),
            exit_reported: false,
            started_by_command: false,
        })
    }

    /// A process the launched command started: attached as any other, and ended with the
    /// command when the window ends ([`Target::finish`]).
    pub fn attach_started(pid: u32) -> Result<Self> {
        Ok(Target {
            started_by_command: true,
            ..Self::attach(pid)?
        })
    }

    /// Forks `command`, leaving the child blocked before exec until [`Target::start`].
    pub fn launch(command: &[String]) -> Result<Self> {
        if let Some(program) = command.first() {
            crate::architecture::check_command(program)?;
        }
        let child = GatedChild::spawn(command)?;
        Ok(Target {
            pid: child.pid(),
            launched: Some(child),
            attached: None,
            exit_reported: false,
            started_by_command: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether `self.pid` still names this process now: an attached one whose pidfd says it
    /// lives, or a launched one not reaped yet (its PID cannot be reused before).
    pub fn holds_pid(&self) -> bool {
        match (&self.launched, &self.attached) {
            (Some(child), _) => !child.is_reaped(),
            (None, Some(handle)) => handle.is_alive(),
            (None, None) => false,
        }
    }

    /// The parent's PID, read from this process's own /proc entry (held since attach).
    pub fn parent_pid(&self) -> Option<u32> {
        let handle = self.attached.as_ref()?;
        let stat = handle.dir().stat().ok()?;
        let ppid = u32::try_from(stat.ppid).ok()?;
        handle.is_alive().then_some(ppid)
    }

    pub fn is_launched(&self) -> bool {
        self.launched.is_some()
    }

    /// Lets a launched command run (no-op for an attached process); fails if it cannot exec.
    pub fn start(&mut self) -> Result<()> {
        match &mut self.launched {
            Some(child) => child.release(),
            None => Ok(()),
        }
    }

    /// Whether the process still runs (not gone, not a zombie). Once false, never true again:
    /// a new process under the same PID is somebody else, and is said so once.
    pub fn alive(&mut self) -> bool {
        let alive = match (&mut self.launched, &self.attached) {
            (Some(child), _) => !child.exited(),
            (None, Some(handle)) => handle.is_alive(),
            (None, None) => false,
        };
        if !alive && !self.exit_reported {
            self.exit_reported = true;
            if let Some(successor) = self.attached.as_ref().and_then(ProcessHandle::successor) {
                tracing::warn!(
                    "PID {} exited and now belongs to another process ({}): the recording \
                     ends here and covers only the process that exited",
                    self.pid,
                    successor.name()
                );
            }
        }
        alive
    }

    /// Ends a launched command that outlived the recording window: SIGTERM, then SIGKILL after
    /// a grace period. A process the command started gets SIGTERM (through its pidfd: never
    /// whoever got its PID since); it is not the agent's child to wait for. A process named on
    /// the command line is never touched.
    pub fn finish(&mut self) {
        if let Some(child) = &mut self.launched {
            child.terminate();
        } else if self.started_by_command {
            if let Some(handle) = self.attached.as_ref().filter(|h| h.is_alive()) {
                handle.terminate();
            }
        }
    }
}

/// Checks that `pid` names a live user process running a program the agent can unwind, with an
/// actionable message otherwise.
pub fn check_pid(pid: u32) -> Result<()> {
    if pid == 0 {
        bail!("no such process: PID 0 is not a process");
    }
    let Ok(stat) = process_stat(pid) else {
        bail!("no such process: PID {pid} (check the PID, and that /proc shows this PID namespace)")
    };
    match stat.state {
        // A zombie main thread with live threads is a running process (main called
        // pthread_exit); only one without any is gone.
        'Z' | 'X' if rprof_symbolizer::proc_dir::live_thread(pid).is_some() => Ok(()),
        'Z' => bail!("process {pid} is a zombie: it has exited and has no code left to profile"),
        'X' => bail!("process {pid} is exiting"),
        _ if is_kernel_thread(&stat) => bail!(
            "PID {pid} is a kernel thread: it has no user-space code to profile; pick a user process"
        ),
        _ => crate::architecture::check_process(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_threads_zombies_and_missing_pids_are_refused() {
        let err = |pid| check_pid(pid).expect_err("refused").to_string();
        // PID 2 is kthreadd on every Linux system; serve used to accept it.
        assert!(err(2).contains("kernel thread"), "{}", err(2));
        assert!(err(0).contains("no such process"), "{}", err(0));
        assert!(err(u32::MAX).contains("no such process"));
        check_pid(std::process::id()).expect("this process is a user process");
    }
}
