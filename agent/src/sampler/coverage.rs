//! Which threads of the target are sampled, and how: with events of their own ("attached"), or
//! through the copies of its creator's events a thread inherits (announced by FORK records).
//!
//! Each thread must be sampled exactly once. A thread created by an attached thread inherits its
//! events, so attaching it too would sample it twice. The FORK record that tells us can arrive
//! after the thread shows up in /proc, be lost, or never be written (the creator's events were
//! still disabled during setup), so a second attach cannot always be avoided. It is made
//! harmless instead: every record names the event that wrote it, and for an attached thread,
//! whatever an inherited event writes after the thread's own events were enabled is a copy.

use std::collections::{HashMap, HashSet};

use super::record::Emitter;

#[derive(Debug, Default)]
pub(crate) struct Coverage {
    /// Attached threads, with the time (CLOCK_MONOTONIC ns) their own events were enabled.
    attached: HashMap<u32, u64>,
    /// Threads announced by FORK records: they sample through inherited events.
    inherited: HashSet<u32>,
    /// Event id → the thread the event was opened for.
    owners: HashMap<u64, u32>,
    attached_total: usize,
    inherited_total: usize,
    /// Attached threads that exited, whose events may now be closed.
    exited_attached: HashSet<u32>,
}

impl Coverage {
    /// Whether `tid` has no events of its own and none inherited that we know of.
    pub(crate) fn needs_attach(&self, tid: u32) -> bool {
        !self.attached.contains_key(&tid) && !self.inherited.contains(&tid)
    }

    /// `tid` got its own events, enabled at `enabled_at` (taken just before enabling them).
    pub(crate) fn attached(&mut self, tid: u32, event_ids: &[u64], enabled_at: u64) {
        for &id in event_ids {
            self.owners.insert(id, tid);
        }
        self.attached.insert(tid, enabled_at);
        self.attached_total += 1;
    }

    /// A FORK record announced `tid`, created by a sampled thread.
    pub(crate) fn forked(&mut self, tid: u32) {
        if self.inherited.insert(tid) {
            self.inherited_total += 1;
        }
    }

    /// `tid` exited: forget it, so a new thread reusing the id is judged afresh.
    pub(crate) fn exited(&mut self, tid: u32) {
        if self.attached.remove(&tid).is_some() {
            self.exited_attached.insert(tid);
        }
        self.inherited.remove(&tid);
    }

    /// Forgets the threads that are no longer among `live` (the target's tasks now) as if
    /// their EXIT records had come: those records are lost when a ring overflows, and are
    /// never written by events still disabled when their thread exits. Without this an
    /// attached thread's descriptors would stay open until the end of the recording.
    pub(crate) fn keep_only(&mut self, live: &HashSet<u32>) {
        let gone: Vec<u32> = self
            .attached
            .keys()
            .chain(&self.inherited)
            .filter(|tid| !live.contains(tid))
            .copied()
            .collect();
        for tid in gone {
            self.exited(tid);
        }
    }

    /// Attached threads that exited since the last call (and those given back to be looked at
    /// again): their own events are to be closed once nothing can write through them.
    pub(crate) fn take_exited_attached(&mut self) -> HashSet<u32> {
        std::mem::take(&mut self.exited_attached)
    }

    /// Threads whose events could not be closed yet, to look at again next time.
    pub(crate) fn still_open(&mut self, tids: HashSet<u32>) {
        self.exited_attached.extend(tids);
    }

    /// The events with these ids were closed: no record can name them any more.
    pub(crate) fn closed(&mut self, event_ids: &[u64]) {
        for id in event_ids {
            self.owners.remove(id);
        }
    }

    /// Whether the record is the second copy written for a thread sampled twice.
    pub(crate) fn is_duplicate(&self, emitter: Emitter) -> bool {
        let Some(&enabled_at) = self.attached.get(&emitter.tid) else {
            return false;
        };
        let written_by_inherited = self
            .owners
            .get(&emitter.event_id)
            .is_some_and(|&owner| owner != emitter.tid);
        written_by_inherited && emitter.time >= enabled_at
    }

    pub(crate) fn attached_total(&self) -> usize {
        self.attached_total
    }

    pub(crate) fn inherited_total(&self) -> usize {
        self.inherited_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_gone_without_an_exit_record_are_forgotten() {
        let mut coverage = Coverage::default();
        coverage.attached(10, &[1, 2], 0);
        coverage.attached(11, &[3, 4], 0);
        coverage.forked(12);
        coverage.keep_only(&HashSet::from([11]));
        assert_eq!(coverage.take_exited_attached(), HashSet::from([10]));
        assert!(
            coverage.needs_attach(12),
            "an inherited thread that vanished is forgotten"
        );
        assert!(!coverage.needs_attach(11));
    }

    fn emitter(tid: u32, event_id: u64, time: u64) -> Emitter {
        Emitter {
            tid,
            event_id,
            time,
        }
    }

    #[test]
    fn attached_and_forked_threads_need_no_attach() {
        let mut coverage = Coverage::default();
        coverage.attached(10, &[1, 2], 100);
        coverage.forked(11);
        assert!(!coverage.needs_attach(10));
        assert!(!coverage.needs_attach(11));
        assert!(coverage.needs_attach(12));
        assert_eq!(
            (coverage.attached_total(), coverage.inherited_total()),
            (1, 1)
        );
    }

    #[test]
    fn exited_attached_threads_are_handed_out_for_closing() {
        let mut coverage = Coverage::default();
        coverage.attached(10, &[1, 2], 100);
        coverage.forked(11);
        coverage.exited(10);
        coverage.exited(11);
        // Only the attached one has events of its own to close.
        assert_eq!(coverage.take_exited_attached(), HashSet::from([10]));
        assert!(coverage.take_exited_attached().is_empty());
        coverage.still_open(HashSet::from([10]));
        assert_eq!(coverage.take_exited_attached(), HashSet::from([10]));
        coverage.closed(&[1, 2]);
        assert!(coverage.owners.is_empty());
    }

    #[test]
    fn an_exited_id_is_judged_afresh() {
        let mut coverage = Coverage::default();
        coverage.forked(11);
        coverage.exited(11);
        assert!(coverage.needs_attach(11));
    }

    #[test]
    fn a_thread_sampled_twice_keeps_only_its_own_events_records() {
        let mut coverage = Coverage::default();
        coverage.attached(10, &[1, 2], 100);
        // Thread 11 inherited event 1 from thread 10, then was attached itself at time 500.
        coverage.attached(11, &[3, 4], 500);
        assert!(coverage.is_duplicate(emitter(11, 1, 600)));
        assert!(!coverage.is_duplicate(emitter(11, 3, 600)));
        // Before its own events existed, the inherited ones were its only coverage.
        assert!(!coverage.is_duplicate(emitter(11, 1, 400)));
        // Thread 10's own records and inherited-only threads are never duplicates.
        assert!(!coverage.is_duplicate(emitter(10, 1, 600)));
        assert!(!coverage.is_duplicate(emitter(12, 1, 600)));
        // Unknown event ids are not judged.
        assert!(!coverage.is_duplicate(emitter(11, 99, 600)));
    }
}
