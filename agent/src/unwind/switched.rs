//! Stacks a thread switched away from, captured with its sample: where the unwind goes on once
//! it reaches the switch.
//!
//! Go runs runtime work on a stack of its own per thread (g0): `systemstack`, `mcall` and
//! `morestack` switch to it, leaving the goroutine's frames on the goroutine's stack, and the
//! time functions do the same around their vdso call. The sample's copy holds only the stack
//! the thread ran on, so the unwind of g0 ends at the switch; what the goroutine was doing is
//! in a second copy, taken in the kernel at the same moment (`agent/bpf/gostack.bpf.c`).
//! Signal handlers run on a stack of their own too (gsignal), away from the code they
//! interrupted.

use super::{Registers, StackMemory};

/// How the thread left the goroutine's stack, which says where the unwind continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchKind {
    /// Running on g0 for the goroutine (`systemstack`, `morestack`): the goroutine's saved
    /// `g.sched`, its pc where the goroutine resumes. The g0 unwind goes on up to the
    /// switching function's frame.
    Scheduled,
    /// In a vdso call (`nanotime1`, `time.now`): the caller's pc (a return address) and stack
    /// pointer, as saved in `m.vdsoPC`/`m.vdsoSP`. The unwind keeps the vdso's frames and the
    /// Go function that called it, whose frame on g0 cannot be unwound.
    Vdso,
    /// Running on g0 for no goroutine: the one that switched to it was descheduled on the way
    /// (`morestack` → `newstack` → `gopreempt_m`), and g0's frames are the whole story, as
    /// after `mcall`.
    Parked,
    /// In a signal handler, on the thread's signal stack (gsignal): the registers of the code
    /// the signal interrupted, as the kernel saved them in the signal frame, and that code's
    /// stack. The handler's unwind goes on up to the signal frame (`__restore_rt`), and from
    /// there at the interrupted instruction itself (a pc that is not a return address).
    Signal,
}

/// The goroutine a sample's thread switched away from: registers to resume unwinding from, and
/// its stack from `regs.sp` up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchedStack {
    pub kind: SwitchKind,
    pub regs: Registers,
    pub stack: Vec<u8>,
}

impl SwitchedStack {
    pub fn memory(&self) -> StackMemory<'_> {
        StackMemory::new(self.regs.sp, &self.stack)
    }
}
