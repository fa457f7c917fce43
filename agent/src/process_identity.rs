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
//!   Everything that reads `/proc/PID/*` over time (record's window, thread snapshots, the
//!   server's captures) holds one: a read made while the handle says "alive", after the handle
//!   was opened, is about that process, since an exit is final.
//!
//! Where `pidfd_open` is refused (older kernels: ENOSYS; a thread id rather than a process id:
//! EINVAL) the handle falls back to comparing incarnations.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use rprof_symbolizer::proc_dir::read_text_lossy;

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
        let stat = Stat::read(pid)?;
        stat.process_alive(pid).then_some(stat.incarnation(pid))
    }

    /// Still the same process, and not a zombie.
    pub fn is_alive(&self) -> bool {
        Incarnation::of(self.pid) == Some(*self)
    }

    /// The command name (comm), for messages.
    pub fn name(&self) -> String {
        Stat::read(self.pid).map(|s| s.comm).unwrap_or_default()
    }

    /// Start time in clock ticks after boot, for ordering processes by age.
    pub(crate) fn start_ticks(&self) -> u64 {
        self.start_ticks
    }
}

/// One process, held through a pidfd (or, failing that, its incarnation).
#[derive(Debug)]
pub struct ProcessHandle {
    incarnation: Incarnation,
    /// `None` where pidfd_open is unavailable: liveness then compares start times.
    pidfd: Option<OwnedFd>,
}

impl ProcessHandle {
    /// The process `pid` names now; `None` if there is none, or it has exited (a zombie).
    pub fn open(pid: u32) -> Option<Self> {
        // The pidfd first, procfs second: if the pidfd's process is still alive after the read,
        // the read was about it (an impostor can only get the PID after it exits).
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return None,
            Err(err) => {
                tracing::debug!(pid, %err, "pidfd_open refused: comparing start times instead");
                None
            }
        };
        // With a pidfd, a process whose main thread exited while others run (its stat says
        // zombie) is alive until its last thread exits; without one, only a live stat counts.
        let stat = Stat::read(pid)?;
        if pidfd.is_none() && !stat.process_alive(pid) {
            return None;
        }
        let handle = ProcessHandle {
            incarnation: stat.incarnation(pid),
            pidfd,
        };
        handle.is_alive().then_some(handle)
    }

    pub fn pid(&self) -> u32 {
        self.incarnation.pid
    }

    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Whether the process still runs: not exited, not a zombie. Never true again once false,
    /// whoever gets the PID next.
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => !pidfd_readable(pidfd),
            None => self.incarnation.is_alive(),
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

/// The fields of /proc/PID/stat that identify a process.
pub(crate) struct Stat {
    pub(crate) comm: String,
    state: char,
    start_ticks: u64,
}

impl Stat {
    pub(crate) fn read(pid: u32) -> Option<Stat> {
        let text = read_text_lossy(Path::new(&format!("/proc/{pid}/stat")), 4096).ok()?;
        Stat::parse(&text)
    }

    fn parse(text: &str) -> Option<Stat> {
        // The name is in parentheses and may itself hold ") ": fields resume after the last.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
        // `fields` starts at field 3 (state); starttime is field 22.
        let state = fields.first()?.chars().next()?;
        let start_ticks = fields.get(19)?.parse().ok()?;
        Some(Stat {
            comm,
            state,
            start_ticks,
        })
    }

    pub(crate) fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Whether process `pid`, whose main thread this stat describes, still runs: its main
    /// thread may have exited (a zombie) while other threads go on.
    pub(crate) fn process_alive(&self, pid: u32) -> bool {
        self.alive() || rprof_symbolizer::proc_dir::live_thread(pid).is_some()
    }

    pub(crate) fn incarnation(&self, pid: u32) -> Incarnation {
        Incarnation {
            pid,
            start_ticks: self.start_ticks,
        }
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pidfd polls readable once its process has exited (zombie or reaped).
fn pidfd_readable(pidfd: &OwnedFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, a descriptor we own for the duration of the call, no wait.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        match ready {
            0 => return false,
            n if n > 0 => return pollfd.revents & (libc::POLLIN | libc::POLLHUP) != 0,
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            // Cannot happen with a valid descriptor; assume the worst rather than run on.
            _ => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stat_fields_come_after_the_last_parenthesis() {
        let text = "42 (my ) (server) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 \
                    1000 10 18446744073709551615";
        let stat = Stat::parse(text).expect("parses");
        assert_eq!(stat.comm, "my ) (server");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_ticks, 987654);
        assert!(stat.alive());
        assert!(Stat::parse("42 (x) Z").is_none());
    }

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
