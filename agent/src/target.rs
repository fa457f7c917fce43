//! The process being recorded: an existing PID, or a command we launch held at the door until
//! the sampler is attached, so its first instruction is already profiled.

use std::io::Read;

use anyhow::{bail, Result};

use crate::launch::GatedChild;

/// A process under recording.
pub struct Target {
    pid: u32,
    launched: Option<GatedChild>,
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
        let child = GatedChild::spawn(command)?;
        Ok(Target {
            pid: child.pid(),
            launched: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
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

    /// Whether the process still runs (not gone, not a zombie).
    pub fn alive(&mut self) -> bool {
        match &mut self.launched {
            Some(child) => !child.exited(),
            None => process_state(self.pid).is_some_and(|state| !matches!(state, 'Z' | 'X')),
        }
    }

    /// Ends a launched command that outlived the recording window: SIGTERM, then SIGKILL after
    /// a grace period. An attached process is never touched.
    pub fn finish(&mut self) {
        if let Some(child) = &mut self.launched {
            child.terminate();
        }
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
