//! Thread snapshots: every thread's registers and stack, taken without stopping the target.
//!
//! This is the analog of Go's goroutine dump for any native process: for every thread, its
//! procfs facts (name, state, wait channel, syscall, CPU times) and a raw copy of its user stack
//! that the caller unwinds and symbolizes.
//!
//! Each thread's stack is taken the cheapest way that works for it, in rounds:
//! 1. a thread blocked in the kernel is read as it waits (`blocked`): its user registers and
//!    stack do not change until it wakes, which is checked;
//! 2. a thread that runs is caught by one perf sample (`sampled`): registers and stack of one
//!    moment, copied by the kernel in a timer interrupt;
//! 3. what neither got (a thread that keeps waking, perf refused) is stopped with ptrace for the
//!    copy (`capture`), bounded, unless the snapshot must stop nothing.
//!
//! The target is never harmed: threads are stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`
//! (never `PTRACE_ATTACH`/`SIGSTOP`, never `PTRACE_O_EXITKILL`), stopped only for as long as it
//! takes to copy registers and stack, and the whole pause runs on a dedicated OS thread whose exit
//! makes the kernel detach anything left behind. Target memory is only ever read.
//!
//! Layout: `procinfo` (thread facts from procfs), `blocked`, `sampled`, `capture` (the three
//! ways to a stack), `rounds` (the first two, in turn), `ptrace` (seize, interrupt, registers,
//! detach), `memory` (reading target memory), `stack` (registers and stack copies),
//! `permission` (why stacks are refused).

mod blocked;
mod capture;
mod maps;
mod memory;
mod permission;
mod procinfo;
mod ptrace;
mod rounds;
mod sampled;
mod stack;
mod state;
mod syscall;
mod syscall_names;

use std::io;
use std::time::Duration;

use crate::process_identity::ProcessHandle;

pub use procinfo::{thread_ids, thread_info, ThreadInfo};
pub use stack::{CaptureSource, Registers, StackCapture};
pub use state::ThreadState;
pub use syscall::SyscallInfo;

/// How a snapshot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Most bytes of stack copied per thread, starting at its stack pointer. The copy also stops at
    /// the end of the mapping that holds the stack pointer, so real copies are usually far smaller.
    /// A perf sample holds at most 64 KiB of it.
    pub max_stack_bytes: usize,
    /// Never stop the target: threads that neither blocked nor ran while the snapshot was taken
    /// get no stack.
    pub nonblocking: bool,
    /// Sample the running threads with perf; without it they are left to the ptrace fallback
    /// (or get no stack when `nonblocking`).
    pub sample_running: bool,
    /// How long, in all, to wait for running threads to be sampled. A runnable thread is
    /// sampled only once it gets a CPU: on an overloaded machine that can take a few hundred
    /// milliseconds (200 ms seen on the 2-CPU test VM at a load average of 9).
    pub running_wait: Duration,
    /// How long to wait for a thread to stop after `PTRACE_INTERRUPT`. A thread that has not
    /// stopped by then (uninterruptible sleep, vfork) is skipped and gets no stack.
    pub stop_timeout: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            max_stack_bytes: 256 * 1024,
            nonblocking: false,
            // RPROF_SNAPSHOT_NO_PERF=1 leaves running threads to the ptrace fallback, as where
            // perf_event_open is refused (a test of that path, and a way around a broken PMU).
            sample_running: std::env::var_os("RPROF_SNAPSHOT_NO_PERF").is_none(),
            running_wait: Duration::from_secs(1),
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
    /// Procfs facts, read before the stacks; main thread first, then by tid.
    pub threads: Vec<ThreadInfo>,
    /// Raw stacks, in the same order as `threads`. May be fewer: threads that exited, or that
    /// no way could capture in time.
    pub stacks: Vec<StackCapture>,
    /// The longest any thread was stopped (ptrace fallback: from the first `PTRACE_INTERRUPT`
    /// to the last `PTRACE_DETACH`). Zero when nothing was stopped.
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
    let mut threads = read_threads(pid, &tids, &clock);
    let mut snapshot = Snapshot {
        pid,
        threads: Vec::new(),
        stacks: Vec::new(),
        pause: Duration::ZERO,
        stack_error: None,
    };
    if pid == std::process::id() {
        snapshot.stack_error = Some(permission::own_process());
    } else if let Some(why) = permission::stacks_refused(pid) {
        snapshot.stack_error = Some(why);
    } else {
        let captured = capture_stacks(&process, &threads, &tids, opts)?;
        if captured.exited {
            return Err(SnapshotError::Exited(pid));
        }
        // Threads born after the procfs read and stopped by the fallback: describe them now.
        let mut born: Vec<u32> = captured.stacks.iter().map(|s| s.tid).collect();
        born.retain(|tid| tids.binary_search(tid).is_err());
        threads.extend(read_threads(pid, &born, &clock));
        snapshot.stacks = captured.stacks;
        snapshot.pause = captured.pause;
        snapshot.stack_error = captured.error;
    }
    snapshot.threads = threads;
    if !process.is_alive() {
        return Err(SnapshotError::Exited(pid));
    }
    sort_main_thread_first(&mut snapshot);
    Ok(snapshot)
}

/// Every live thread's stack: blocked ones read, running ones sampled, in rounds, then the
/// ptrace fallback for the rest unless `opts.nonblocking`.
fn capture_stacks(
    process: &ProcessHandle,
    threads: &[ThreadInfo],
    tids: &[u32],
    opts: &SnapshotOptions,
) -> Result<capture::Captured, SnapshotError> {
    let pid = process.pid();
    let mut reader = stack::StackReader::new(pid, tids, opts.max_stack_bytes);
    // An exited thread (a main thread that called pthread_exit) has no stack left to read.
    let mut missing: Vec<u32> = threads
        .iter()
        .filter(|t| t.state != ThreadState::Zombie)
        .map(|t| t.tid)
        .collect();
    let stacks = rounds::without_stopping(pid, &mut missing, &mut reader, opts);
    let mut captured = capture::Captured::nothing();
    if !missing.is_empty() && !opts.nonblocking {
        captured = capture::stop_and_capture(process, &missing, tids, opts)?;
        if captured.error.is_some() && !stacks.is_empty() {
            // The fallback was refused, but the other ways got stacks: not "no stacks at all".
            tracing::debug!(pid, why = ?captured.error, "threads left without a stack");
            captured.error = None;
        }
    }
    captured.stacks.extend(stacks);
    Ok(captured)
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
