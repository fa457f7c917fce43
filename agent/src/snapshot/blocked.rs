//! Stacks of threads blocked in the kernel, read without stopping them.
//!
//! While a thread waits in the kernel (a system call, a page fault, a stop), the user registers
//! it entered with and its user stack above the stack pointer do not change:
//! `/proc/PID/task/TID/syscall` gives the stack and instruction pointers (read by the kernel
//! once the thread is off its CPU), and `process_vm_readv` copies the stack. The thread may wake
//! while this happens; the copy is kept only if it provably did not: its scheduler counters
//! (`/proc/.../schedstat`: CPU time and times it was put on a CPU) and its syscall line are the
//! same after the copy as before. A thread that keeps waking is tried a few times, then left to
//! the other ways.

use super::stack::{CaptureSource, Registers, StackCapture, StackReader};
use super::syscall::{parse_syscall, SyscallInfo};
use crate::proc::{read_bounded, task_file, SMALL_FILE_LIMIT};

/// Copies tried per thread before giving up: each costs a few system calls, and a thread that
/// woke three times in a row is better caught running.
const ATTEMPTS: usize = 3;

/// The stack of thread `tid` if it is blocked in the kernel and stays there while it is read.
pub(crate) fn capture(pid: u32, tid: u32, reader: &mut StackReader) -> Option<StackCapture> {
    for _ in 0..ATTEMPTS {
        let before = sched_counters(pid, tid)?;
        // None: running (or runnable), or gone.
        let entry = read_syscall(pid, tid)?;
        let regs = entry_registers(&entry)?;
        let capture = reader.capture(tid, regs, CaptureSource::Blocked);
        let still = read_syscall(pid, tid);
        if still.as_ref() == Some(&entry) && sched_counters(pid, tid) == Some(before) {
            return Some(capture);
        }
    }
    None
}

/// The registers saved at kernel entry; the frame pointer is not in the syscall file.
fn entry_registers(syscall: &SyscallInfo) -> Option<Registers> {
    (syscall.sp != 0).then_some(Registers {
        ip: syscall.pc,
        sp: syscall.sp,
        bp: 0,
    })
}

fn read_syscall(pid: u32, tid: u32) -> Option<SyscallInfo> {
    let text = read_bounded(&task_file(pid, tid, "syscall"), SMALL_FILE_LIMIT).ok()?;
    parse_syscall(&text)
}

/// The thread's schedstat line: nanoseconds on a CPU, nanoseconds waiting for one, times put
/// on one. Any run of the thread changes the first and the last.
fn sched_counters(pid: u32, tid: u32) -> Option<Vec<u8>> {
    read_bounded(&task_file(pid, tid, "schedstat"), SMALL_FILE_LIMIT).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_threads::{Parked, Spinner};
    use std::time::Duration;

    #[test]
    fn a_sleeping_thread_is_read_and_a_running_one_is_not() {
        let pid = std::process::id();
        let (parked, spinner) = (Parked::start(), Spinner::start());
        std::thread::sleep(Duration::from_millis(50));
        let mut reader = StackReader::new(pid, &[pid], 64 * 1024);
        let taken = capture(pid, parked.tid, &mut reader).expect("a blocked thread's stack");
        assert_eq!(taken.source, CaptureSource::Blocked);
        assert!(taken.regs.sp != 0 && !taken.stack.is_empty());
        // The kernel cannot tell a running thread's user registers.
        assert_eq!(capture(pid, spinner.tid, &mut reader), None);
    }
}
