//! Thread facts from procfs: name, state, wait channel, system call, CPU times, age.
//!
//! Everything here is read without stopping the target, and everything read is untrusted: reads
//! are bounded, parsers return `None` instead of panicking, and a thread that vanishes between two
//! reads is simply missing from the result.

use std::io;
use std::time::Duration;

use procfs::ProcError;

use super::state::ThreadState;
use super::syscall::{parse_syscall, SyscallInfo};
use crate::proc::{process_file, read_bounded, task_file, SMALL_FILE_LIMIT, STATUS_FILE_LIMIT};

/// One thread as procfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: u32,
    /// The thread name (`comm`, at most 15 bytes, set with `pthread_setname_np` or `prctl`).
    pub name: String,
    pub state: ThreadState,
    /// Kernel function the thread sleeps in; `None` when running or unreadable.
    pub wchan: Option<String>,
    /// System call the thread is blocked in; `None` when running or unreadable.
    pub syscall: Option<SyscallInfo>,
    pub utime: Duration,
    pub stime: Duration,
    pub voluntary_ctxt_switches: u64,
    pub nonvoluntary_ctxt_switches: u64,
    /// Time since the thread started.
    pub age: Duration,
}

/// The thread ids of a process, sorted, from `/proc/PID/task`.
pub fn thread_ids(pid: u32) -> io::Result<Vec<u32>> {
    let mut tids = crate::proc::task_ids(&process_file(pid, "task"))?;
    tids.sort_unstable();
    Ok(tids)
}

/// Procfs facts about one thread of `pid`; `None` if the thread is gone.
pub fn thread_info(pid: u32, tid: u32) -> Option<ThreadInfo> {
    thread_info_at(pid, tid, &Clock::read())
}

/// [`thread_info`] with the clock read once for many threads.
///
/// Parsed by hand rather than with procfs: a snapshot reads several files of every thread, each
/// with a size bound, and fuzzes their parsers; procfs's `Status` fails whole on a thread name
/// that is not UTF-8 (the context-switch counts would go), and its `Stat` parser panics on
/// text that is cut short.
pub(crate) fn thread_info_at(pid: u32, tid: u32, clock: &Clock) -> Option<ThreadInfo> {
    let stat = read_stat(pid, tid)?;
    let status = read_bounded(&task_file(pid, tid, "status"), STATUS_FILE_LIMIT).ok();
    let status = status.as_deref().unwrap_or_default();
    Some(ThreadInfo {
        tid,
        name: stat.name,
        state: ThreadState::from_code(stat.state),
        wchan: read_small(pid, tid, "wchan").and_then(|w| parse_wchan(&w)),
        syscall: read_small(pid, tid, "syscall").and_then(|s| parse_syscall(&s)),
        utime: clock.ticks(stat.utime),
        stime: clock.ticks(stat.stime),
        voluntary_ctxt_switches: status_u64(status, "voluntary_ctxt_switches").unwrap_or(0),
        nonvoluntary_ctxt_switches: status_u64(status, "nonvoluntary_ctxt_switches").unwrap_or(0),
        age: clock.since_boot.saturating_sub(clock.ticks(stat.starttime)),
    })
}

/// Whether `pid` is a kernel thread, which has no user stack. Errors if the process is gone.
pub(crate) fn is_kernel_thread(pid: u32) -> io::Result<bool> {
    let stat = crate::proc::process_stat(pid).map_err(|err| match err {
        ProcError::NotFound(_) => io::Error::from(io::ErrorKind::NotFound),
        ProcError::Io(err, _) => err,
        other => io::Error::other(other),
    })?;
    Ok(crate::proc::is_kernel_thread(&stat))
}

/// Whether a thread has exited (or is gone), which is why ptrace would refuse it.
pub(crate) fn is_exiting(pid: u32, tid: u32) -> bool {
    read_stat(pid, tid).is_none_or(|s| matches!(s.state, 'Z' | 'X' | 'x'))
}

/// The PID tracing `pid` (`TracerPid:` in its status), 0 when none. Not procfs's `Status`: it
/// reads the file as UTF-8 lines, and fails whole on a `Name:` that is not (a name the target
/// chooses).
pub(crate) fn tracer_pid(pid: u32) -> Option<u32> {
    let status = read_bounded(&process_file(pid, "status"), STATUS_FILE_LIMIT).ok()?;
    status_u64(&status, "TracerPid").and_then(|p| u32::try_from(p).ok())
}

/// Turns clock ticks and boot-relative times into durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    ticks_per_second: u64,
    /// Now, as time since boot: the reference stat's `starttime` counts from.
    since_boot: Duration,
}

impl Clock {
    pub(crate) fn read() -> Clock {
        let uptime = read_bounded(std::path::Path::new("/proc/uptime"), SMALL_FILE_LIMIT).ok();
        Clock {
            // USER_HZ is 100 everywhere Linux runs today; procfs asks sysconf to be sure.
            ticks_per_second: procfs::ticks_per_second().max(1),
            since_boot: uptime.and_then(|u| parse_uptime(&u)).unwrap_or_default(),
        }
    }

    fn ticks(&self, ticks: u64) -> Duration {
        let secs = ticks / self.ticks_per_second;
        let rest = u128::from(ticks % self.ticks_per_second);
        // rest < ticks_per_second, so the quotient is below one second and fits.
        let nanos = rest * 1_000_000_000 / u128::from(self.ticks_per_second);
        Duration::new(secs, nanos as u32)
    }
}

/// The fields of `/proc/.../stat` a snapshot uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatFields {
    pub(crate) name: String,
    pub(crate) state: char,
    pub(crate) flags: u64,
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    pub(crate) starttime: u64,
}

fn read_stat(pid: u32, tid: u32) -> Option<StatFields> {
    parse_stat(&read_small(pid, tid, "stat")?)
}

fn read_small(pid: u32, tid: u32, name: &str) -> Option<Vec<u8>> {
    read_bounded(&task_file(pid, tid, name), SMALL_FILE_LIMIT).ok()
}

/// Parses `pid (comm) state ppid ...`. The name may contain spaces and parentheses, so it ends at
/// the *last* `)`; the fields after it are numbered from 3 (state) as in proc(5).
pub(crate) fn parse_stat(text: &[u8]) -> Option<StatFields> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let name = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(20).collect();
    // fields[0] is field 3 of proc(5), so field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let mut state_chars = fields.first()?.chars();
    let state = state_chars.next()?;
    Some(StatFields {
        name,
        state,
        flags: field(9)?,
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// A numeric `Key:\tvalue` line of a status file.
fn status_u64(status: &[u8], key: &str) -> Option<u64> {
    let text = std::str::from_utf8(status).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().parse().ok()
    })
}

/// The wait channel: a kernel symbol name, or "0" when the thread is not sleeping (or the kernel
/// hides it).
fn parse_wchan(text: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(text).ok()?.trim();
    (!name.is_empty() && name != "0").then(|| name.to_owned())
}

/// The first field of /proc/uptime: seconds since boot, with a fraction.
fn parse_uptime(text: &[u8]) -> Option<Duration> {
    let first = std::str::from_utf8(text)
        .ok()?
        .split_ascii_whitespace()
        .next()?;
    Duration::try_from_secs_f64(first.parse().ok()?).ok()
}

#[doc(hidden)]
pub(crate) mod fuzzing {
    /// The parsers of the small per-thread files, for the fuzz target.
    pub(crate) fn parse_small_files(text: &[u8]) {
        let _ = super::status_u64(text, "voluntary_ctxt_switches");
        let _ = super::status_u64(text, "TracerPid");
        let _ = super::parse_wchan(text);
        let clock = super::Clock {
            ticks_per_second: 100,
            since_boot: super::parse_uptime(text).unwrap_or_default(),
        };
        if let Some(stat) = super::parse_stat(text) {
            let started = clock.ticks(stat.starttime);
            let _ = clock.since_boot.saturating_sub(started);
            let _ = (clock.ticks(stat.utime), clock.ticks(stat.stime));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 120 0 0 0 \
        250 17 0 0 20 0 3 0 98765 10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 \
        17 1 0 0 0 0 0\n";

    #[test]
    fn stat_name_ends_at_the_last_parenthesis() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.name, "we (ird) name");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.flags, 4194560);
        assert_eq!((stat.utime, stat.stime, stat.starttime), (250, 17, 98765));
    }

    #[test]
    fn truncated_or_garbage_stat_gives_nothing() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat(b"12 )x( S 1 2 3"), None);
        assert_eq!(parse_stat(&STAT[..60]), None);
    }

    #[test]
    fn status_values_by_key() {
        let status = b"Name:\tx\nTracerPid:\t17\nvoluntary_ctxt_switches:\t12\n\
            nonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_u64(status, "TracerPid"), Some(17));
        assert_eq!(status_u64(status, "voluntary_ctxt_switches"), Some(12));
        assert_eq!(status_u64(status, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(status_u64(status, "Name"), None);
        assert_eq!(status_u64(status, "Missing"), None);
    }

    #[test]
    fn wchan_zero_means_none() {
        assert_eq!(parse_wchan(b"0"), None);
        assert_eq!(parse_wchan(b""), None);
        assert_eq!(
            parse_wchan(b"futex_wait_queue\n").as_deref(),
            Some("futex_wait_queue")
        );
    }

    #[test]
    fn ticks_and_uptime_become_durations() {
        let clock = Clock {
            ticks_per_second: 100,
            since_boot: parse_uptime(b"350.25 120.00\n").unwrap(),
        };
        assert_eq!(clock.since_boot, Duration::from_millis(350_250));
        assert_eq!(clock.ticks(250), Duration::from_millis(2500));
        assert_eq!(parse_uptime(b"nan"), None);
        assert_eq!(parse_uptime(b"-1"), None);
    }

    #[test]
    fn reads_its_own_threads() {
        let pid = std::process::id();
        let tids = thread_ids(pid).unwrap();
        assert!(tids.contains(&pid));
        let me = thread_info(pid, pid).unwrap();
        assert_eq!(me.tid, pid);
        assert!(!is_kernel_thread(pid).unwrap());
        assert!(thread_info(pid, u32::MAX).is_none());
    }
}
