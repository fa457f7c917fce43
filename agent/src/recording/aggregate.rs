//! What the unwinder stage feeds with unwound stacks: a kind's aggregate.

use crate::profile::{PseudoFrame, StackAggregate, StackSample};
use crate::unwind::{ModuleSet, UnwindEnd};

/// One sample after unwinding.
#[derive(Clone, Copy)]
pub struct Unwound<'a> {
    pub tid: u32,
    /// Kernel frames, leaf first (empty unless kernel frames are recorded).
    pub kernel: &'a [u64],
    /// User frames as lookup addresses, leaf first.
    pub user: &'a [u64],
    pub end: UnwindEnd,
    /// The target's code as the unwinder knows it now: for kinds that tell samples apart by
    /// the functions on their stack (a wait on a lock or on I/O).
    pub modules: &'a ModuleSet,
}

impl<'a> Unwound<'a> {
    /// The sample as the stack aggregate files it, with the kind's `labels`; a stack unwound
    /// short of its root ends in `[truncated stack]`.
    pub fn stack_sample(&self, labels: &'a [(&'static str, &'a str)]) -> StackSample<'a> {
        StackSample {
            tid: self.tid,
            kernel: self.kernel,
            user: self.user,
            root: (self.end == UnwindEnd::Truncated).then_some(PseudoFrame::Truncated),
            labels,
        }
    }
}

/// An online aggregate of unwound samples, owned by the unwinder thread.
pub trait Aggregate: Send + 'static {
    /// What the kind's drain attaches to each sample: its weights and labels, known when the
    /// record is read (e.g. how long a thread was off CPU).
    type Extra: Send + 'static;

    /// One sample, unwound.
    fn add(&mut self, sample: Unwound<'_>, extra: Self::Extra);

    /// Records the kernel dropped.
    fn add_lost(&mut self, count: u64);

    /// An event without a stack, in stream order (see [`super::Event::Note`]).
    fn note(&mut self, _extra: Self::Extra) {}

    /// The stacks, whose thread names the unwinder stage keeps up to date.
    fn stacks(&mut self) -> &mut StackAggregate;
}
