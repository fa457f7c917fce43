//! The keeper: an idle child process of the agent on which each probe keeps one event open
//! for the whole recording (see `sampler/hold.rs` for why). It is the agent's own binary,
//! started with [`KEEPER_ENV`] set, and does nothing but wait to be killed: by the recording
//! when it ends, or by the kernel when the thread that started it dies (the agent killed).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::sampler::{hold_probes, ProbeHold};

/// Set, to the agent's PID, in the keeper's environment.
pub const KEEPER_ENV: &str = "RPROF_AGENT_PROBE_KEEPER";

/// A running keeper holding probes; dropping it releases them and ends the keeper.
pub struct Keeper {
    hold: Option<ProbeHold>,
    child: Child,
}

impl Keeper {
    /// Starts a keeper and holds the tracepoints `ids` on it.
    pub fn start(ids: &[u64]) -> Result<Keeper> {
        let mut command = Command::new("/proc/self/exe");
        command
            .env(KEEPER_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec and calls only prctl,
        // which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .context("cannot start the agent's probe keeper (/proc/self/exe)")?;
        let mut keeper = Keeper { hold: None, child };
        keeper.hold = Some(hold_probes(keeper.child.id(), ids)?);
        Ok(keeper)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.hold = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the keeper (the agent started with [`KEEPER_ENV`]): waits, never returns. Call first
/// thing in `main`; returns at once in the agent itself.
pub fn serve_if_asked() {
    let Some(parent) = std::env::var_os(KEEPER_ENV) else {
        return;
    };
    let parent: i32 = parent.to_str().and_then(|p| p.parse().ok()).unwrap_or(-1);
    // SAFETY: plain system calls without pointers.
    unsafe {
        // The parent may have died before the death signal was armed (set before exec).
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        loop {
            libc::pause();
        }
    }
}
