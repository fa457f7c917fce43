//! Snapshots that never stop the target.
//!
//! For a thread blocked in the kernel, `/proc/PID/task/TID/syscall` gives the user stack pointer
//! and instruction pointer saved at kernel entry, and the user stack above that pointer does not
//! change while the thread stays blocked. Running threads get no stack, and a thread that wakes
//! between the two reads may yield a torn copy: the price of not pausing anything.

use std::io;
use std::time::Duration;

use super::permission;
use super::procinfo::{self, Clock};
use super::stack::{Registers, StackReader};
use super::syscall::SyscallInfo;
use super::{Snapshot, SnapshotOptions};
use crate::proc::{read_bounded, task_file, SMALL_FILE_LIMIT};

pub(crate) fn snapshot(pid: u32, tids: &[u32], opts: &SnapshotOptions, clock: &Clock) -> Snapshot {
    let mut reader = StackReader::new(pid, tids, opts.max_stack_bytes);
    let mut threads = Vec::with_capacity(tids.len());
    let mut stacks = Vec::new();
    for &tid in tids {
        let Some(info) = procinfo::thread_info_at(pid, tid, clock) else {
            continue;
        };
        // Copy right after reading the syscall file, to keep the window in which the thread may
        // wake up short.
        if let Some(regs) = info.syscall.as_ref().and_then(entry_registers) {
            stacks.push(reader.capture(tid, regs));
        }
        threads.push(info);
    }
    let stack_error = syscall_file_refused(pid)
        .then(|| permission::explain(pid, "reading /proc/PID/task/*/syscall"));
    Snapshot {
        pid,
        threads,
        stacks,
        pause: Duration::ZERO,
        stack_error,
    }
}

/// The registers saved at kernel entry; the frame pointer is not in the syscall file.
fn entry_registers(syscall: &SyscallInfo) -> Option<Registers> {
    (syscall.sp != 0).then_some(Registers {
        ip: syscall.pc,
        sp: syscall.sp,
        bp: 0,
    })
}

/// The syscall file needs ptrace access: when it is refused, every thread reads as "no syscall"
/// and the snapshot must say why stacks are missing.
fn syscall_file_refused(pid: u32) -> bool {
    match read_bounded(&task_file(pid, pid, "syscall"), SMALL_FILE_LIMIT) {
        Ok(_) => false,
        Err(err) => err.kind() == io::ErrorKind::PermissionDenied,
    }
}
