//! The keeper: an idle child process of the agent on which each probe keeps one event open
//! for the whole recording (see `sampler/hold.rs` for why). It is the agent's own binary,
//! started with [`KEEPER_ENV`] set, and does nothing but wait: the recording kills it when it
//! ends; if the agent dies first (killed), the kernel sends it SIGTERM once the agent's
//! descriptors are closed, and it removes the agent's probe definitions from tracefs, then
//! exits.

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
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
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
    // SIGTERM (the agent's death) is taken with sigwait, outside any handler.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    let _ = set.thread_block();
    // SAFETY: a system call without pointers.
    let adopted = unsafe { libc::getppid() } != parent;
    // The parent may have died before the death signal was armed (set before exec).
    if !adopted {
        let _ = set.wait();
    }
    if let Ok(parent) = u32::try_from(parent) {
        super::tracefs::remove_groups_of(parent, std::time::Duration::from_secs(10));
    }
    std::process::exit(0);
}
