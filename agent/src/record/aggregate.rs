//! What the unwinder stage feeds with unwound stacks: the aggregate of one profile.

use crate::profile::{CpuProfile, ThreadcreateProfile};
use crate::unwind::UnwindEnd;

/// An online aggregate of unwound samples, owned by the unwinder thread.
pub trait Aggregate: Send + 'static {
    /// One sample of thread `tid`: kernel frames, then user frames, each leaf first.
    fn add(&mut self, tid: u32, kernel: &[u64], user: &[u64], end: UnwindEnd);

    /// Records the kernel dropped.
    fn add_lost(&mut self, count: u64);

    fn set_thread_name(&mut self, tid: u32, name: &str);

    /// `tid` was created by `creator`. Returns whether that named `tid` (else its name is read
    /// from /proc with its first sample).
    fn thread_created(&mut self, _tid: u32, _creator: u32) -> bool {
        false
    }

    /// `tid` exited.
    fn thread_exited(&mut self, _tid: u32) {}
}

impl Aggregate for CpuProfile {
    fn add(&mut self, tid: u32, kernel: &[u64], user: &[u64], end: UnwindEnd) {
        CpuProfile::add(self, tid, kernel, user, end);
    }

    fn add_lost(&mut self, count: u64) {
        CpuProfile::add_lost(self, count);
    }

    fn set_thread_name(&mut self, tid: u32, name: &str) {
        CpuProfile::set_thread_name(self, tid, name);
    }

    fn thread_exited(&mut self, tid: u32) {
        self.forget_thread(tid);
    }
}

impl Aggregate for ThreadcreateProfile {
    /// Uprobe samples are taken in user mode: there are no kernel frames.
    fn add(&mut self, tid: u32, _kernel: &[u64], user: &[u64], end: UnwindEnd) {
        ThreadcreateProfile::add(self, tid, user, end);
    }

    fn add_lost(&mut self, count: u64) {
        ThreadcreateProfile::add_lost(self, count);
    }

    fn set_thread_name(&mut self, tid: u32, name: &str) {
        ThreadcreateProfile::set_thread_name(self, tid, name);
    }

    fn thread_created(&mut self, tid: u32, creator: u32) -> bool {
        self.inherit_thread_name(tid, creator)
    }

    fn thread_exited(&mut self, tid: u32) {
        self.forget_thread(tid);
    }
}
