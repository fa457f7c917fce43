//! What the unwinder stage feeds with unwound stacks: a kind's aggregate.

use crate::profile::StackAggregate;
use crate::unwind::UnwindEnd;

/// One sample after unwinding.
#[derive(Debug, Clone, Copy)]
pub struct Unwound<'a> {
    pub tid: u32,
    /// Kernel frames, leaf first (empty unless kernel frames are recorded).
    pub kernel: &'a [u64],
    /// User frames as lookup addresses, leaf first.
    pub user: &'a [u64],
    pub end: UnwindEnd,
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

    /// The stacks, whose thread names the unwinder stage keeps up to date.
    fn stacks(&mut self) -> &mut StackAggregate;
}
