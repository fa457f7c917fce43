//! The ptrace requests a snapshot needs: seize, interrupt, wait for the stop, read registers,
//! detach.
//!
//! Deliberately absent: `PTRACE_ATTACH` (its SIGSTOP can leave a group-stop behind),
//! `PTRACE_O_EXITKILL` (the target must survive the agent), and every request that writes to the
//! target. ptrace is per tracer *thread*: all of these must be called from the OS thread that
//! seized the tracee.

use std::ffi::c_void;

use nix::errno::Errno;
use nix::sys::ptrace::{self as nix_ptrace, Options};
use nix::unistd::Pid;

use super::stack::Registers;

/// What `waitpid` says about a tracee we are waiting to see stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopEvent {
    /// In a ptrace-stop; `signal` must be passed back at detach (0 for none).
    Stopped { signal: i32 },
    /// Exited (and is now reaped): nothing to detach.
    Exited,
    /// Not stopped yet.
    NotYet,
}

/// Makes `tid` a tracee without stopping it. No options: in particular no `PTRACE_O_EXITKILL`.
pub(crate) fn seize(tid: u32) -> Result<(), Errno> {
    nix_ptrace::seize(pid(tid)?, Options::empty())
}

/// Asks a seized tracee to stop. The stop is transparent to the target: a system call it was
/// blocked in is restarted when it resumes.
pub(crate) fn interrupt(tid: u32) -> Result<(), Errno> {
    nix_ptrace::interrupt(pid(tid)?)
}

/// Checks, without blocking, whether a tracee has stopped.
pub(crate) fn poll_stop(tid: u32) -> Result<StopEvent, Errno> {
    let pid = pid(tid)?.as_raw();
    let mut status: libc::c_int = 0;
    // Raw rather than nix's waitpid: nix cannot represent a stop by a real-time signal and
    // returns an error after the kernel has consumed the status, losing a signal that must be
    // passed back to the target at detach.
    // SAFETY: waitpid writes one c_int through the pointer, which points to a live local.
    let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL | libc::WNOHANG) };
    match ret {
        0 => Ok(StopEvent::NotYet),
        r if r < 0 => Err(Errno::last()),
        _ => Ok(decode_wait_status(status)),
    }
}

/// Decodes a `waitpid` status of a seized tracee.
fn decode_wait_status(status: libc::c_int) -> StopEvent {
    if libc::WIFSTOPPED(status) {
        // An event stop (`PTRACE_EVENT_STOP` in the high bits: our interrupt, or a group-stop) has
        // no signal to deliver. A plain stop is a signal-delivery-stop: the kernel has dequeued
        // the signal and delivers it only if the tracer passes it back.
        let is_event_stop = status >> 16 != 0;
        let signal = if is_event_stop {
            0
        } else {
            libc::WSTOPSIG(status)
        };
        StopEvent::Stopped { signal }
    } else if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        StopEvent::Exited
    } else {
        StopEvent::NotYet
    }
}

/// The registers of a stopped tracee.
#[cfg(target_arch = "x86_64")]
pub(crate) fn registers(tid: u32) -> Result<Registers, Errno> {
    let regs = nix_ptrace::getregs(pid(tid)?)?;
    Ok(Registers {
        ip: regs.rip,
        sp: regs.rsp,
        bp: regs.rbp,
    })
}

/// The registers of a stopped tracee.
#[cfg(target_arch = "aarch64")]
pub(crate) fn registers(tid: u32) -> Result<Registers, Errno> {
    let regs = nix_ptrace::getregs(pid(tid)?)?;
    Ok(Registers {
        ip: regs.pc,
        sp: regs.sp,
        bp: regs.regs[29],
    })
}

/// Lets a stopped tracee go, delivering `signal` if it was stopped on its way to receive one.
pub(crate) fn detach(tid: u32, signal: i32) -> Result<(), Errno> {
    let pid = pid(tid)?.as_raw();
    let data = std::ptr::without_provenance_mut::<c_void>(usize::try_from(signal).unwrap_or(0));
    // Raw rather than nix's detach, which only accepts the signals of its enum (no real-time ones).
    // SAFETY: PTRACE_DETACH dereferences nothing: `addr` is ignored and `data` is the signal
    // number passed by value.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid,
            std::ptr::null_mut::<c_void>(),
            data,
        )
    };
    Errno::result(ret).map(drop)
}

/// Thread ids above `i32::MAX` cannot exist.
fn pid(tid: u32) -> Result<Pid, Errno> {
    i32::try_from(tid)
        .map(Pid::from_raw)
        .map_err(|_| Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a wait status the way the kernel does: (event << 16) | (signal << 8) | 0x7f.
    fn stop_status(signal: i32, event: i32) -> libc::c_int {
        (event << 16) | (signal << 8) | 0x7f
    }

    #[test]
    fn event_stops_carry_no_signal_and_signal_stops_keep_theirs() {
        let interrupt = stop_status(libc::SIGTRAP, libc::PTRACE_EVENT_STOP);
        let group_stop = stop_status(libc::SIGSTOP, libc::PTRACE_EVENT_STOP);
        let realtime = stop_status(libc::SIGRTMIN() + 3, 0);
        assert_eq!(
            decode_wait_status(interrupt),
            StopEvent::Stopped { signal: 0 }
        );
        assert_eq!(
            decode_wait_status(group_stop),
            StopEvent::Stopped { signal: 0 }
        );
        assert_eq!(
            decode_wait_status(stop_status(libc::SIGCHLD, 0)),
            StopEvent::Stopped {
                signal: libc::SIGCHLD
            }
        );
        assert_eq!(
            decode_wait_status(realtime),
            StopEvent::Stopped {
                signal: libc::SIGRTMIN() + 3
            }
        );
    }

    #[test]
    fn exits_and_kills_are_exits() {
        assert_eq!(decode_wait_status(3 << 8), StopEvent::Exited);
        assert_eq!(decode_wait_status(libc::SIGKILL), StopEvent::Exited);
    }

    #[test]
    fn impossible_thread_ids_are_no_such_process() {
        assert_eq!(seize(u32::MAX), Err(Errno::ESRCH));
    }
}
