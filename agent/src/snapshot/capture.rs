//! The fallback pause: seize the threads no other way could capture, stop them, copy registers
//! and stacks, resume.
//!
//! Order of work, chosen to keep each stop short: the mappings are read and every thread is seized
//! (which does not stop it) before the first `PTRACE_INTERRUPT`; each thread's registers and stack
//! are copied as soon as it reports its stop, and it is detached right after; the task list is
//! then read again for threads created meanwhile (which go through the same steps). The caller
//! reads procfs facts before all this.
//!
//! No thread is ever left stopped, in three layers:
//! 1. every thread that stopped is detached explicitly, on the normal path and from
//!    `Session::drop` on an early return or a panic;
//! 2. the pause runs on a dedicated OS thread, and when a tracer thread exits the kernel detaches
//!    all its tracees (ptrace is per tracer thread). This also releases threads that were
//!    interrupted but had not stopped by the deadline, which `PTRACE_DETACH` cannot reach since it
//!    only works on a stopped tracee;
//! 3. threads are seized without `PTRACE_O_EXITKILL`, so if the whole agent dies (SIGKILL) the
//!    kernel detaches them and they resume.

use std::collections::HashSet;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use tracing::debug;

use super::permission;
use super::procinfo;
use super::ptrace::{self, StopEvent};
use super::stack::{CaptureSource, StackCapture, StackReader};
use super::SnapshotOptions;
use crate::process_identity::ProcessHandle;

/// Most rounds of "stop the threads, then look for new ones": threads created by the ones that
/// ran meanwhile are adopted in the next round; the bound guards against endless thread churn.
const MAX_ROUNDS: usize = 8;

/// Pause between polls of the stop status when no thread stopped since the last poll. Sleeping
/// rather than spinning or yielding leaves our CPU free for the target threads that still need one
/// to reach their stop, which matters most on small machines.
const POLL_INTERVAL: Duration = Duration::from_micros(20);

/// What the stop-the-world phase produced.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) stacks: Vec<StackCapture>,
    pub(crate) pause: Duration,
    /// Why there are no stacks at all.
    pub(crate) error: Option<String>,
    /// The process exited before its threads were stopped: whatever was seized may belong to
    /// a new process under its PID, so nothing was captured.
    pub(crate) exited: bool,
}

impl Captured {
    /// Nothing stopped, nothing to report.
    pub(crate) fn nothing() -> Captured {
        Captured {
            stacks: Vec::new(),
            pause: Duration::ZERO,
            error: None,
            exited: false,
        }
    }

    /// No stacks, for the given reason; nothing was stopped.
    pub(crate) fn refused(reason: String) -> Captured {
        Captured {
            error: Some(reason),
            ..Captured::nothing()
        }
    }

    /// Nothing, because the process exited before its threads were stopped.
    pub(crate) fn exited() -> Captured {
        Captured {
            exited: true,
            ..Captured::refused("the process exited".into())
        }
    }
}

/// Stops threads `tids` of the process, and those created since the task list `known` was
/// read, copies their registers and stacks, resumes them. Runs on a thread of its own whose
/// exit is the last-resort detach (see the module docs).
pub(crate) fn stop_and_capture(
    process: &ProcessHandle,
    tids: &[u32],
    known: &[u32],
    opts: &SnapshotOptions,
) -> io::Result<Captured> {
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name("rprof-snapshot".into())
            .spawn_scoped(scope, || capture_on_this_thread(process, tids, known, opts))?;
        // A panic is a bug: Session::drop has already detached, so surface it unchanged.
        Ok(worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

fn capture_on_this_thread(
    process: &ProcessHandle,
    tids: &[u32],
    known: &[u32],
    opts: &SnapshotOptions,
) -> Captured {
    let pid = process.pid();
    // Reading the maps can take milliseconds for big processes: do it before anything stops.
    let mut reader = StackReader::new(pid, tids, opts.max_stack_bytes);
    let mut session = Session::new(pid);
    // Threads the caller has already taken care of are not for the rescans to adopt.
    session.known.extend(known);
    // Gone already: its tids may name a newcomer's threads, which are not even to be seized.
    if !process.is_alive() {
        return Captured::exited();
    }
    let seized = session.seize(tids);
    // The threads seized, and the maps read, are the process procfs was read from only if it
    // is still alive now (an exit is final): else they may be a newcomer's under the same PID,
    // which must not even be stopped. Dropping the session detaches whatever was seized.
    if !process.is_alive() {
        return Captured::exited();
    }
    if seized.is_err() {
        return Captured::refused(permission::explain(pid, "ptrace"));
    }
    if session.tracees.is_empty() {
        return Captured::refused("no thread could be stopped: the process is exiting".into());
    }
    session.interrupt_all();
    let mut stacks = Vec::with_capacity(session.tracees.len());
    let mut pause = Duration::ZERO;
    for _ in 0..MAX_ROUNDS {
        let deadline = Instant::now() + opts.stop_timeout;
        let longest = session.collect_stops(deadline, |tid| {
            // ESRCH: killed while stopped. Nothing to capture.
            if let Ok(regs) = ptrace::registers(tid) {
                stacks.push(reader.capture(tid, regs, CaptureSource::Stopped));
            }
        });
        pause = pause.max(longest);
        if !session.adopt_new_threads() {
            break;
        }
    }
    session.release_all();
    Captured {
        stacks,
        pause,
        error: None,
        exited: false,
    }
}

/// The first thread could not be seized for lack of permission.
struct PermissionDenied;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Traced but running.
    Seized,
    /// Asked to stop, not stopped yet.
    Interrupted,
    /// Asked to stop, and did not within the stop timeout (uninterruptible sleep, vfork).
    TimedOut,
    /// In a ptrace-stop; `signal` must be passed back at detach.
    Stopped { signal: i32 },
    /// Detached, exited, or otherwise no longer ours to release.
    Released,
}

struct Tracee {
    tid: u32,
    phase: Phase,
    /// When it was last seen not stopped yet: its stop began after that.
    running_at: Instant,
}

/// The threads this tracer thread has seized. Dropping it releases every stopped one.
struct Session {
    pid: u32,
    tracees: Vec<Tracee>,
    /// Every tid seen, seized or not, so rescans only try new threads.
    known: HashSet<u32>,
}

impl Session {
    fn new(pid: u32) -> Session {
        Session {
            pid,
            tracees: Vec::new(),
            known: HashSet::new(),
        }
    }

    /// Seizes the listed threads. EPERM on the first live thread means we may not trace this
    /// process at all; later failures (a thread that exited, or is traced by someone else) only
    /// skip that thread.
    fn seize(&mut self, tids: &[u32]) -> Result<(), PermissionDenied> {
        for &tid in tids {
            self.known.insert(tid);
            match ptrace::seize(tid) {
                Ok(()) => self.tracees.push(Tracee {
                    tid,
                    phase: Phase::Seized,
                    running_at: Instant::now(),
                }),
                // ptrace also refuses an exited thread (a zombie main thread) with EPERM.
                Err(Errno::EPERM)
                    if self.tracees.is_empty() && !procinfo::is_exiting(self.pid, tid) =>
                {
                    return Err(PermissionDenied);
                }
                Err(err) => debug!(tid, %err, "thread not seized"),
            }
        }
        Ok(())
    }

    fn interrupt_all(&mut self) {
        for tracee in &mut self.tracees {
            interrupt(tracee);
        }
    }

    /// Seizes and interrupts threads created since the task list was last read; false if none.
    fn adopt_new_threads(&mut self) -> bool {
        let Ok(tids) = procinfo::thread_ids(self.pid) else {
            return false;
        };
        let mut adopted = false;
        for tid in tids {
            if self.known.insert(tid) && ptrace::seize(tid).is_ok() {
                let mut tracee = Tracee {
                    tid,
                    phase: Phase::Seized,
                    running_at: Instant::now(),
                };
                interrupt(&mut tracee);
                self.tracees.push(tracee);
                adopted = true;
            }
        }
        adopted
    }

    /// Waits until every interrupted thread has stopped or exited, calling `on_stop` for each as
    /// soon as it stops and detaching it right after: each thread is stopped only for its own
    /// copy. Threads still running at `deadline` are given up on. Returns the longest any
    /// thread was stopped (counted from the last time it was seen running, an upper bound).
    fn collect_stops(&mut self, deadline: Instant, mut on_stop: impl FnMut(u32)) -> Duration {
        let mut longest = Duration::ZERO;
        loop {
            let mut waiting = false;
            let mut progressed = false;
            for tracee in &mut self.tracees {
                if tracee.phase != Phase::Interrupted {
                    continue;
                }
                match ptrace::poll_stop(tracee.tid) {
                    Ok(StopEvent::Stopped { signal }) => {
                        tracee.phase = Phase::Stopped { signal };
                        on_stop(tracee.tid);
                        detach_if_stopped(tracee);
                        longest = longest.max(tracee.running_at.elapsed());
                        progressed = true;
                    }
                    Ok(StopEvent::NotYet) | Err(Errno::EINTR) => {
                        tracee.running_at = Instant::now();
                        waiting = true;
                    }
                    // ECHILD: no longer our tracee (it exited and was reaped by the kernel).
                    Ok(StopEvent::Exited) | Err(_) => {
                        tracee.phase = Phase::Released;
                        progressed = true;
                    }
                }
            }
            if !waiting {
                return longest;
            }
            if Instant::now() >= deadline {
                self.give_up_waiting();
                return longest;
            }
            if !progressed {
                thread::sleep(POLL_INTERVAL);
            }
        }
    }

    fn give_up_waiting(&mut self) {
        for tracee in &mut self.tracees {
            if tracee.phase == Phase::Interrupted {
                tracee.phase = Phase::TimedOut;
            }
        }
    }

    /// Detaches every stopped thread, then gives stragglers (interrupted, not stopped) one last
    /// look. Whatever remains is released by the kernel when this thread exits.
    fn release_all(&mut self) {
        for tracee in &mut self.tracees {
            detach_if_stopped(tracee);
        }
        let mut stragglers = 0;
        for tracee in &mut self.tracees {
            if matches!(tracee.phase, Phase::Interrupted | Phase::TimedOut) {
                if let Ok(StopEvent::Stopped { signal }) = ptrace::poll_stop(tracee.tid) {
                    tracee.phase = Phase::Stopped { signal };
                    detach_if_stopped(tracee);
                }
            }
            stragglers += usize::from(tracee.phase != Phase::Released);
        }
        if stragglers > 0 {
            debug!(
                pid = self.pid,
                stragglers, "threads did not stop in time; released when the snapshot thread exits"
            );
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.release_all();
    }
}

fn interrupt(tracee: &mut Tracee) {
    tracee.running_at = Instant::now();
    tracee.phase = match ptrace::interrupt(tracee.tid) {
        Ok(()) => Phase::Interrupted,
        // ESRCH: it exited, and the trace went with it.
        Err(_) => Phase::Released,
    };
}

fn detach_if_stopped(tracee: &mut Tracee) {
    if let Phase::Stopped { signal } = tracee.phase {
        // ESRCH here means it was killed while stopped: nothing left to release.
        if let Err(err) = ptrace::detach(tracee.tid, signal) {
            debug!(tid = tracee.tid, %err, "detach failed");
        }
        tracee.phase = Phase::Released;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn an_exited_process_is_not_captured_through_its_old_tids() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let process = ProcessHandle::open(pid).expect("the child runs");
        child.kill().expect("kill");
        child.wait().expect("reap");
        // Whoever holds the PID now, nothing is seized or copied in the old process's name.
        let captured =
            capture_on_this_thread(&process, &[pid], &[pid], &SnapshotOptions::default());
        assert!(captured.exited);
        assert!(captured.stacks.is_empty());
    }
}
