//! Which copied goroutine stack goes with which sample.
//!
//! The program runs in the sample's own overflow, on the sampled thread, after the kernel has
//! stamped the sample and before it writes it: its copy is stamped a few microseconds after the
//! sample's time, and is in the program's ring before the sample is in the perf ring. So a
//! sample's copy, if it has one, is its thread's first copy stamped at or shortly after the
//! sample; copies never claimed (their sample was lost) are dropped once a later sample of the
//! thread passes them.

use std::collections::{HashMap, VecDeque};

use super::Captured;
use crate::unwind::SwitchedStack;

/// How long after its sample a copy may be stamped: the program's own run (a 16 KiB copy), far
/// below the shortest sampling period of a thread (1 ms at 1 kHz).
pub const MAX_LAG_NS: u64 = 200_000;
/// Copies kept per thread, waiting for their samples (a drain's worth at most).
const PER_THREAD: usize = 256;
/// Threads with copies waiting: past this, the oldest waiting copies are dropped.
const MAX_THREADS: usize = 4096;

/// Copies not yet claimed by their sample, per thread in time order.
#[derive(Debug, Default)]
pub struct Pending {
    by_thread: HashMap<u32, VecDeque<(u64, SwitchedStack)>>,
}

impl Pending {
    /// Keeps a copy until its sample comes.
    pub fn insert(&mut self, captured: Captured) {
        if self.by_thread.len() >= MAX_THREADS && !self.by_thread.contains_key(&captured.tid) {
            self.by_thread.clear();
        }
        let queue = self.by_thread.entry(captured.tid).or_default();
        if queue.len() >= PER_THREAD {
            queue.pop_front();
        }
        queue.push_back((captured.time, captured.stack));
    }

    /// The copies taken with thread `tid`'s sample at `time`, in the order the program sent
    /// them (a vdso call's, then g0's). Older copies of the thread go (their samples are
    /// gone); later ones stay for later samples.
    pub fn take(&mut self, tid: u32, time: u64) -> Vec<SwitchedStack> {
        let Some(queue) = self.by_thread.get_mut(&tid) else {
            return Vec::new();
        };
        while queue.front().is_some_and(|(stamp, _)| *stamp < time) {
            queue.pop_front();
        }
        let mut found = Vec::new();
        while queue
            .front()
            .is_some_and(|(stamp, _)| stamp - time <= MAX_LAG_NS)
        {
            found.extend(queue.pop_front().map(|(_, stack)| stack));
        }
        if queue.is_empty() {
            self.by_thread.remove(&tid);
        }
        found
    }

    /// Copies waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_thread.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::{Registers, SwitchKind};

    fn copy(tid: u32, time: u64, ip: u64) -> Captured {
        Captured {
            tid,
            time,
            stack: SwitchedStack {
                kind: SwitchKind::Scheduled,
                regs: Registers { ip, sp: 0, bp: 0 },
                stack: Vec::new(),
            },
        }
    }

    #[test]
    fn a_sample_takes_the_copy_stamped_just_before_it() {
        let mut pending = Pending::default();
        pending.insert(copy(1, 1_000_010, 0xa));
        pending.insert(copy(2, 1_000_510, 0xb));
        pending.insert(copy(1, 11_000_003, 0xc));
        let ips = |stacks: Vec<SwitchedStack>| stacks.iter().map(|s| s.regs.ip).collect::<Vec<_>>();
        assert_eq!(ips(pending.take(1, 1_000_000)), [0xa]);
        assert_eq!(ips(pending.take(2, 1_000_500)), [0xb]);
        // Thread 1's next copy waits for its own sample.
        assert_eq!(pending.len(), 1);
        assert_eq!(ips(pending.take(1, 11_000_000)), [0xc]);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn samples_without_a_copy_take_none_and_drop_stale_copies() {
        let mut pending = Pending::default();
        pending.insert(copy(1, 1_000_000, 0xa));
        // A sample 10 ms later: the copy's own sample was lost.
        assert!(pending.take(1, 11_000_000).is_empty());
        assert_eq!(pending.len(), 0);
        // A sample well before the next copy of its thread: not its copy.
        pending.insert(copy(1, 20_000_000, 0xb));
        assert!(pending.take(1, 19_000_000).is_empty());
        assert_eq!(pending.len(), 1);
        assert!(pending.take(3, 19_000_000).is_empty());
    }

    #[test]
    fn a_sample_takes_both_copies_of_a_vdso_call_on_g0_in_order() {
        let mut pending = Pending::default();
        pending.insert(copy(1, 1_000_004, 0xa));
        pending.insert(copy(1, 1_000_006, 0xb));
        pending.insert(copy(1, 11_000_006, 0xc));
        let taken = pending.take(1, 1_000_000);
        assert_eq!(
            taken.iter().map(|s| s.regs.ip).collect::<Vec<_>>(),
            [0xa, 0xb]
        );
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn waiting_copies_are_bounded() {
        let mut pending = Pending::default();
        for time in 0..(PER_THREAD as u64 + 10) {
            pending.insert(copy(1, time, time));
        }
        assert_eq!(pending.len(), PER_THREAD);
        for tid in 0..(MAX_THREADS as u32 + 5) {
            pending.insert(copy(tid + 10, 1, 1));
        }
        assert!(pending.len() <= MAX_THREADS + PER_THREAD);
    }
}
