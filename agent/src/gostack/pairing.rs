//! Which copied goroutine stacks go with which sample.
//!
//! The program runs once in each sample's overflow, on the sampled thread, and sends a group of
//! entries for it (a signal's interrupted stack, a vdso call's stack, then g0's goroutine; or
//! an entry that says there is nothing): a thread's groups come in the order of its samples.
//! The kernel stamps the sample within microseconds of the program's entries (before them
//! since Linux 6.3, after them before), and the entries are in the program's ring before the
//! sample is in the perf ring.
//! So a sample's group is its thread's first one stamped within [`MAX_LAG_NS`] of it; groups
//! stamped earlier belong to samples that were lost, and go.

use std::collections::{HashMap, VecDeque};

use super::Captured;
use crate::unwind::SwitchedStack;

/// How far apart a sample and its group may be stamped: the program's own run (a 16 KiB copy),
/// far below the sampling period of a thread (10 ms at 100 Hz; 1 ms at 1 kHz).
pub const MAX_LAG_NS: u64 = 200_000;
/// Groups kept per thread, waiting for their samples (a drain's worth at most).
const PER_THREAD: usize = 256;
/// Stack bytes kept waiting, all threads together: past this, every waiting group goes (their
/// samples are then unwound as if nothing had been copied).
const MAX_BYTES: usize = 64 << 20;

/// One sample's entries.
#[derive(Debug)]
struct Group {
    stamp: u64,
    stacks: Vec<SwitchedStack>,
    /// Its last entry came: one that ends a group ([`Captured::ends_sample`]).
    complete: bool,
}

/// Groups not yet claimed by their sample, per thread in time order.
#[derive(Debug, Default)]
pub struct Pending {
    by_thread: HashMap<u32, VecDeque<Group>>,
    bytes: usize,
}

impl Pending {
    /// Files an entry with its sample's group.
    pub fn insert(&mut self, captured: Captured) {
        let ends = captured.ends_sample();
        let size = captured.stack.as_ref().map_or(0, |s| s.stack.len());
        if self.bytes + size > MAX_BYTES {
            self.by_thread.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        let queue = self.by_thread.entry(captured.tid).or_default();
        // A group still open that long before this entry lost its last entry (the ring was
        // full): it ends there, rather than taking the next sample's entries.
        if let Some(open) = queue.back_mut().filter(|group| !group.complete) {
            open.complete = open.stamp.abs_diff(captured.time) > MAX_LAG_NS;
        }
        if queue.back().is_none_or(|group| group.complete) {
            if queue.len() >= PER_THREAD {
                if let Some(old) = queue.pop_front() {
                    self.bytes -= bytes_of(&old);
                }
            }
            queue.push_back(Group {
                stamp: captured.time,
                stacks: Vec::new(),
                complete: false,
            });
        }
        if let Some(group) = queue.back_mut() {
            group.stacks.extend(captured.stack);
            group.complete = ends;
        }
    }

    /// The stacks copied with thread `tid`'s sample at `time`, innermost first; none if it has
    /// no group (nothing to follow, or its entries were lost). Older groups of the thread go
    /// (their samples are gone); later ones stay for later samples.
    pub fn take(&mut self, tid: u32, time: u64) -> Vec<SwitchedStack> {
        let Some(queue) = self.by_thread.get_mut(&tid) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while let Some(group) = queue.front() {
            let stale = group.stamp.saturating_add(MAX_LAG_NS) < time;
            let ours = !stale && group.stamp.abs_diff(time) <= MAX_LAG_NS;
            if !stale && !ours {
                break;
            }
            let Some(group) = queue.pop_front() else {
                break;
            };
            self.bytes -= bytes_of(&group);
            if ours {
                taken = group.stacks;
                break;
            }
        }
        if queue.is_empty() {
            self.by_thread.remove(&tid);
        }
        taken
    }

    /// Groups waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_thread.values().map(VecDeque::len).sum()
    }
}

fn bytes_of(group: &Group) -> usize {
    group.stacks.iter().map(|s| s.stack.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::{Registers, SwitchKind};

    fn entry(tid: u32, time: u64, kind: Option<SwitchKind>, ip: u64) -> Captured {
        Captured {
            tid,
            time,
            stack: kind.map(|kind| SwitchedStack {
                kind,
                regs: Registers { ip, sp: 0, bp: 0 },
                stack: vec![0; 64],
            }),
        }
    }

    fn copy(tid: u32, time: u64, ip: u64) -> Captured {
        entry(tid, time, Some(SwitchKind::Scheduled), ip)
    }

    fn ips(stacks: Vec<SwitchedStack>) -> Vec<u64> {
        stacks.iter().map(|s| s.regs.ip).collect()
    }

    #[test]
    fn a_sample_takes_its_group_stamped_before_or_after_it() {
        let mut pending = Pending::default();
        pending.insert(copy(1, 1_000_010, 0xa));
        pending.insert(copy(2, 1_000_490, 0xb));
        pending.insert(copy(1, 11_000_003, 0xc));
        // Stamped after the sample (Linux ≥ 6.3), and before it (older kernels).
        assert_eq!(ips(pending.take(1, 1_000_000)), [0xa]);
        assert_eq!(ips(pending.take(2, 1_000_500)), [0xb]);
        // Thread 1's next group waits for its own sample.
        assert_eq!(pending.len(), 1);
        assert_eq!(ips(pending.take(1, 11_000_000)), [0xc]);
        assert_eq!(pending.len(), 0);
        assert_eq!(pending.bytes, 0);
    }

    #[test]
    fn a_sample_with_nothing_to_follow_does_not_take_the_next_samples_group() {
        let mut pending = Pending::default();
        pending.insert(entry(1, 1_000_005, None, 0));
        // A second sample 20 µs later (a frequency-driven event starting up).
        pending.insert(copy(1, 1_000_025, 0xb));
        assert!(pending.take(1, 1_000_000).is_empty());
        assert_eq!(ips(pending.take(1, 1_000_020)), [0xb]);
    }

    #[test]
    fn lost_samples_drop_their_groups() {
        let mut pending = Pending::default();
        pending.insert(copy(1, 1_000_000, 0xa));
        // A sample 10 ms later: the group's own sample was lost.
        assert!(pending.take(1, 11_000_000).is_empty());
        assert_eq!(pending.len(), 0);
        // A sample well before the next group of its thread: not its group.
        pending.insert(copy(1, 20_000_000, 0xb));
        assert!(pending.take(1, 19_000_000).is_empty());
        assert_eq!(pending.len(), 1);
        assert!(pending.take(3, 19_000_000).is_empty());
    }

    #[test]
    fn a_vdso_call_on_g0_gives_its_sample_both_stacks_in_order() {
        let mut pending = Pending::default();
        pending.insert(entry(1, 1_000_004, Some(SwitchKind::Vdso), 0xa));
        pending.insert(copy(1, 1_000_006, 0xb));
        pending.insert(copy(1, 11_000_006, 0xc));
        assert_eq!(ips(pending.take(1, 1_000_000)), [0xa, 0xb]);
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn a_signal_handler_s_sample_gets_the_interrupted_stack_and_what_follows_it() {
        let mut pending = Pending::default();
        // In a handler's vdso call, interrupting g0 working for a goroutine.
        pending.insert(entry(1, 1_000_002, Some(SwitchKind::Vdso), 0xa));
        pending.insert(entry(1, 1_000_004, Some(SwitchKind::Signal), 0xb));
        pending.insert(copy(1, 1_000_006, 0xc));
        // The next sample: in a handler that interrupted the goroutine itself.
        pending.insert(entry(1, 11_000_004, Some(SwitchKind::Signal), 0xd));
        pending.insert(entry(1, 11_000_006, None, 0));
        assert_eq!(ips(pending.take(1, 1_000_000)), [0xa, 0xb, 0xc]);
        assert_eq!(ips(pending.take(1, 11_000_000)), [0xd]);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn a_group_whose_last_entry_was_lost_does_not_take_the_next_samples() {
        let mut pending = Pending::default();
        // The first sample's group lost its end (a full ring); the next sample's is whole.
        pending.insert(entry(1, 1_000_004, Some(SwitchKind::Signal), 0xa));
        pending.insert(entry(1, 11_000_004, Some(SwitchKind::Signal), 0xb));
        pending.insert(copy(1, 11_000_006, 0xc));
        assert_eq!(ips(pending.take(1, 1_000_000)), [0xa]);
        assert_eq!(ips(pending.take(1, 11_000_000)), [0xb, 0xc]);
    }

    #[test]
    fn waiting_groups_are_bounded() {
        let mut pending = Pending::default();
        for time in 0..(PER_THREAD as u64 + 10) {
            pending.insert(copy(1, time * 1000, time));
        }
        assert_eq!(pending.len(), PER_THREAD);
        assert_eq!(pending.bytes, PER_THREAD * 64);
        let big = Captured {
            stack: Some(SwitchedStack {
                stack: vec![0; MAX_BYTES],
                ..copy(2, 0, 0).stack.unwrap()
            }),
            ..copy(2, 0, 0)
        };
        pending.insert(big);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.bytes, MAX_BYTES);
    }
}
