//! Which process a PID names, and whether that process — not merely its PID — still runs.
//!
//! A PID is only a number: once its process exits (and is reaped), the kernel may hand it to
//! any new process. An agent that polls `/proc/PID` every few milliseconds would then carry on
//! with the newcomer: sample it, read its thread names and mappings, and write them into a
//! profile of the process the user asked for. Two tools tell incarnations apart:
//!
//! - [`Incarnation`]: the PID plus the start time (field 22 of `/proc/PID/stat`). Plain data
//!   (`Copy`, comparable), which is what the server's target watch publishes and compares. Its
//!   resolution is one clock tick (10 ms), so a PID reused within the same tick — possible in a
//!   small PID namespace — is not told apart.
//! - [`ProcessHandle`]: a pidfd (`pidfd_open`, Linux ≥ 5.3). It refers to one process for as
//!   long as it is open and becomes readable when that process exits; it cannot be fooled by
//!   reuse, whatever the timing, and checking it costs one `poll` instead of parsing procfs.
//!   Everything that reads `/proc/PID/*` over time (the sampler, record's window, thread
//!   snapshots, the server's captures) holds one: a read made while the handle says "alive",
//!   after the handle was opened, is about that process, since an exit is final. It also holds
//!   the process's `/proc/PID` open ([`ProcDir`]), for reads that must fail rather than
//!   describe a newcomer.
//!
//! Where `pidfd_open` is refused (older kernels: ENOSYS; a thread id rather than a process id:
//! EINVAL) the handle falls back to comparing incarnations.

mod by_name;
mod pidfd;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use procfs::process::Stat;
use procfs::ProcError;

use crate::proc::{is_exited, process_stat, ProcDir};
pub use by_name::find_by_name;
use pidfd::{pidfd_open, pidfd_readable};

/// One incarnation of a process. The start time tells a recycled PID from the process that
/// held it before (to within a clock tick: see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incarnation {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    start_ticks: u64,
}

impl Incarnation {
    /// The process `pid` is now, if it exists and has not exited.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = process_stat(pid).ok()?;
        process_alive(pid, &stat).then_some(Incarnation::from_stat(pid, &stat))
    }

    /// The incarnation `stat` (of process `pid`'s main thread) describes.
    pub(crate) fn from_stat(pid: u32, stat: &Stat) -> Self {
        Incarnation {
            pid,
            start_ticks: stat.starttime,
        }
    }

    /// Still the same process, and not a zombie.
    pub fn is_alive(&self) -> bool {
        Incarnation::of(self.pid) == Some(*self)
    }

    /// The command name (comm), for messages.
    pub fn name(&self) -> String {
        process_stat(self.pid)
            .ok()
            .map(|s| s.comm)
            .unwrap_or_default()
    }

    /// Start time in clock ticks after boot, for ordering processes by age.
    pub(crate) fn start_ticks(&self) -> u64 {
        self.start_ticks
    }
}

/// Whether process `pid`, whose main thread `stat` describes, still runs: its main thread may
/// have exited (a zombie) while other threads go on.
pub(crate) fn process_alive(pid: u32, stat: &Stat) -> bool {
    !is_exited(stat) || rprof_symbolizer::proc_dir::live_thread(pid).is_some()
}

/// One process, held through a pidfd (or, failing that, its incarnation), with its `/proc`
/// directory: the one type for "the process we profile".
#[derive(Debug)]
pub struct ProcessHandle {
    incarnation: Incarnation,
    /// `None` where pidfd_open is unavailable: liveness then compares start times.
    pidfd: Option<OwnedFd>,
    /// `/proc/PID`, opened after the pidfd: read while the pidfd says alive, it is this
    /// process's.
    dir: ProcDir,
}

impl ProcessHandle {
    /// The process `pid` names now; `None` if there is none, or it has exited (a zombie).
    pub fn open(pid: u32) -> Option<Self> {
        Self::attach(pid).ok()
    }

    /// [`ProcessHandle::open`], telling a missing or exited process ([`ProcError::NotFound`])
    /// from a /proc that cannot be read.
    pub fn attach(pid: u32) -> Result<Self, ProcError> {
        let gone = || ProcError::NotFound(None);
        // The pidfd first, procfs second: if the pidfd's process is still alive after the read,
        // the read was about it (an impostor can only get the PID after it exits).
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Err(gone()),
            Err(err) => {
                tracing::debug!(pid, %err, "pidfd_open refused: comparing start times instead");
                None
            }
        };
        let dir = ProcDir::open(pid)?;
        let stat = dir.stat()?;
        // With a pidfd, a process whose main thread exited while others run (its stat says
        // zombie) is alive until its last thread exits; without one, only a live stat counts.
        if pidfd.is_none() && !process_alive(pid, &stat) {
            return Err(gone());
        }
        let handle = ProcessHandle {
            incarnation: Incarnation::from_stat(pid, &stat),
            pidfd,
            dir,
        };
        if handle.is_alive() {
            Ok(handle)
        } else {
            Err(gone())
        }
    }

    pub fn pid(&self) -> u32 {
        self.incarnation.pid
    }

    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The process's `/proc/PID`, held open.
    pub fn dir(&self) -> &ProcDir {
        &self.dir
    }

    /// The pidfd, which polls readable once the process has exited (`None` without pidfds).
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// The thread ids listed now; empty once the process is gone.
    pub fn tasks(&self) -> Vec<u32> {
        self.dir.tasks()
    }

    /// Whether the process still runs: not exited, not a zombie. Never true again once false,
    /// whoever gets the PID next.
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => !pidfd_readable(pidfd),
            None => self.incarnation.is_alive(),
        }
    }

    /// Asks the process to terminate (SIGTERM), through its pidfd: never another process that
    /// got its PID since. Without pidfds (kernels before 5.3) nothing is sent.
    pub fn terminate(&self) {
        if let Some(pidfd) = &self.pidfd {
            if let Err(err) = pidfd::pidfd_send_signal(pidfd, libc::SIGTERM) {
                tracing::debug!(pid = self.pid(), %err, "SIGTERM not sent");
            }
        }
    }

    /// Another process now holding this one's PID, once it has exited: what a message about
    /// the reuse names. `None` while this process lives or while the PID is free.
    pub fn successor(&self) -> Option<Incarnation> {
        if self.is_alive() {
            return None;
        }
        Incarnation::of(self.pid()).filter(|now| *now != self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_handle_sees_its_process_exit_and_stays_exited() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let handle = ProcessHandle::open(child.id()).expect("the child runs");
        assert!(
            handle.pidfd.is_some(),
            "pidfd_open is refused on this kernel"
        );
        assert!(handle.is_alive());
        assert_eq!(handle.successor(), None);
        child.kill().expect("kill");
        // Unreaped: a zombie is not alive, and holds the PID, so there is no successor.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while handle.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!handle.is_alive());
        assert_eq!(handle.successor(), None);
        assert!(
            ProcessHandle::open(child.id()).is_none(),
            "a zombie is not opened"
        );
        child.wait().expect("reap");
        assert!(!handle.is_alive());
    }

    #[test]
    fn missing_and_impossible_pids_have_no_handle() {
        assert!(ProcessHandle::open(0).is_none());
        assert!(ProcessHandle::open(u32::MAX).is_none());
        let me = ProcessHandle::open(std::process::id()).expect("we run");
        assert_eq!(
            me.incarnation(),
            Incarnation::of(std::process::id()).unwrap()
        );
    }
}
