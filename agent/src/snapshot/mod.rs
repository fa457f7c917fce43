//! Thread snapshots: stop every thread briefly with ptrace, copy registers and stacks, resume.
//!
//! This is the analog of Go's goroutine dump for any native process: for every thread, its
//! procfs facts (name, state, wait channel, syscall, CPU times) and a raw copy of its user stack
//! that the caller unwinds and symbolizes.
//!
//! The target is never harmed: threads are stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`
//! (never `PTRACE_ATTACH`/`SIGSTOP`, never `PTRACE_O_EXITKILL`), stopped only for as long as it
//! takes to copy registers and stack, and the whole pause runs on a dedicated OS thread whose exit
//! makes the kernel detach anything left behind. Target memory is only ever read.
//!
//! Layout: `procinfo` (thread facts from procfs), `ptrace` (seize, interrupt, registers, detach),
//! `memory` (reading target memory), `stack` (registers and stack copies), `capture`
//! (orchestrating the pause), `nonblocking` (stacks without stopping anything).

mod capture;
mod maps;
mod memory;
mod nonblocking;
mod permission;
mod procinfo;
mod ptrace;
mod stack;
mod state;
mod syscall;
mod syscall_names;

use std::io;
use std::time::Duration;

use crate::process_identity::ProcessHandle;

pub use procinfo::{thread_ids, thread_info, ThreadInfo};
pub use stack::{Registers, StackCapture};
pub use state::ThreadState;
pub use syscall::SyscallInfo;

/// How a snapshot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Most bytes of stack copied per thread, starting at its stack pointer. The copy also stops at
    /// the end of the mapping that holds the stack pointer, so real copies are usually far smaller.
    pub max_stack_bytes: usize,
    /// Never stop the target: stacks only for threads blocked in the kernel, whose user stack
    /// pointer `/proc/PID/task/TID/syscall` reveals. Running threads get no stack.
    pub nonblocking: bool,
    /// How long to wait for a thread to stop after `PTRACE_INTERRUPT`. A thread that has not
    /// stopped by then (uninterruptible sleep, vfork) is skipped and gets no stack.
    pub stop_timeout: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            max_stack_bytes: 256 * 1024,
            nonblocking: false,
            stop_timeout: Duration::from_millis(100),
        }
    }
}

/// Entry points for the fuzz targets in `fuzz/`: the procfs parsers on arbitrary bytes. Not API.
#[doc(hidden)]
pub mod fuzzing {
    /// Runs the stat, status, syscall, wchan, uptime and readable-maps parsers on `text`.
    pub fn parse_procfs(text: &[u8]) {
        if let Some(stat) = super::procinfo::parse_stat(text) {
            let _ = super::ThreadState::from_code(stat.state);
        }
        super::procinfo::fuzzing::parse_small_files(text);
        if let Some(info) = super::syscall::parse_syscall(text) {
            assert_eq!(info.name, super::syscall_names::syscall_name(info.nr));
        }
        if let Ok(ranges) = super::maps::ReadableRanges::parse(text) {
            let _ = ranges.containing(0x7fff_0000_0000);
        }
    }
}

/// Every thread of a process at one moment, with the raw stacks that could be captured.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pid: u32,
    /// Procfs facts, read just before the pause; main thread first, then by tid.
    pub threads: Vec<ThreadInfo>,
    /// Raw stacks, in the same order as `threads`. May be fewer: threads that exited, did not stop
    /// in time, or (nonblocking) were running.
    pub stacks: Vec<StackCapture>,
    /// How long the target was stopped: from the first `PTRACE_INTERRUPT` to the last
    /// `PTRACE_DETACH`. Zero in nonblocking mode.
    pub pause: Duration,
    /// Why stacks are missing altogether, as one actionable line (e.g. ptrace not permitted).
    pub stack_error: Option<String>,
}

/// Why no snapshot could be taken at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no process with PID {0}")]
    NoSuchProcess(u32),
    #[error("PID {0} is a kernel thread: it has no user-space threads to snapshot")]
    KernelThread(u32),
    #[error(
        "process {0} exited during the snapshot: nothing of it was kept (its PID may already \
         name another process)"
    )]
    Exited(u32),
    #[error("snapshot I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Takes a snapshot of every thread of `pid`: see the module documentation for the guarantees.
///
/// Everything is read from one incarnation of `pid`: the process is held by a pidfd opened
/// before the first procfs read, and a snapshot during which it exited is discarded (what was
/// read or stopped after the exit may belong to a new process that got the PID).
pub fn take_snapshot(pid: u32, opts: &SnapshotOptions) -> Result<Snapshot, SnapshotError> {
    let process = ProcessHandle::open(pid);
    check_target(pid)?;
    let process = process.ok_or(SnapshotError::NoSuchProcess(pid))?;
    let tids = thread_ids(pid).map_err(|e| process_error(pid, e))?;
    if tids.is_empty() {
        return Err(SnapshotError::NoSuchProcess(pid));
    }
    let clock = procinfo::Clock::read();
    let mut snapshot = if opts.nonblocking {
        nonblocking::snapshot(pid, &tids, opts, &clock)
    } else {
        stopped_snapshot(&process, &tids, opts, &clock)?
    };
    if !process.is_alive() {
        return Err(SnapshotError::Exited(pid));
    }
    sort_main_thread_first(&mut snapshot);
    Ok(snapshot)
}

/// Reads procfs, then stops every thread to copy its stack, and resumes.
///
/// Procfs is read *before* the pause: during it every thread reads as "tracing stop", and right
/// after it the threads show what the pause did to them (still runnable, or in
/// `restart_syscall` instead of the sleep they were interrupted in).
fn stopped_snapshot(
    process: &ProcessHandle,
    tids: &[u32],
    opts: &SnapshotOptions,
    clock: &procinfo::Clock,
) -> Result<Snapshot, SnapshotError> {
    let pid = process.pid();
    let mut threads = read_threads(pid, tids, clock);
    let captured = if pid == std::process::id() {
        capture::Captured::refused(permission::own_process())
    } else {
        capture::stop_and_capture(process, tids, opts)?
    };
    if captured.exited {
        return Err(SnapshotError::Exited(pid));
    }
    // Threads born after the procfs read were captured too: describe them now.
    let mut born: Vec<u32> = captured.stacks.iter().map(|s| s.tid).collect();
    born.retain(|tid| tids.binary_search(tid).is_err());
    threads.extend(read_threads(pid, &born, clock));
    Ok(Snapshot {
        pid,
        threads,
        stacks: captured.stacks,
        pause: captured.pause,
        stack_error: captured.error,
    })
}

fn read_threads(pid: u32, tids: &[u32], clock: &procinfo::Clock) -> Vec<ThreadInfo> {
    tids.iter()
        .filter_map(|&tid| procinfo::thread_info_at(pid, tid, clock))
        .collect()
}

/// Refuses targets that cannot have user stacks, before anything touches them.
fn check_target(pid: u32) -> Result<(), SnapshotError> {
    match procinfo::is_kernel_thread(pid) {
        Ok(false) => Ok(()),
        Ok(true) => Err(SnapshotError::KernelThread(pid)),
        Err(e) => Err(process_error(pid, e)),
    }
}

/// A /proc read that fails because the process is gone means "no such process", not I/O trouble.
fn process_error(pid: u32, err: io::Error) -> SnapshotError {
    let gone = err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH);
    if gone {
        SnapshotError::NoSuchProcess(pid)
    } else {
        SnapshotError::Io(err)
    }
}

fn sort_main_thread_first(snapshot: &mut Snapshot) {
    let pid = snapshot.pid;
    snapshot.threads.sort_by_key(|t| (t.tid != pid, t.tid));
    snapshot.stacks.sort_by_key(|s| (s.tid != pid, s.tid));
}
