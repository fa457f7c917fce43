//! Off-CPU intervals from context-switch sampling: a sample taken as a thread leaves the CPU
//! holds its stack; the switch record that brings it back tells how long it was away. The pair
//! is one wait, weighted by the sampling period the sample stands for. Switches the kernel
//! marks as preemptions (the thread was still runnable) are not waits: they are dropped, or
//! (`wall`) timed the same way as time spent runnable.
//!
//! Rings are per CPU: a thread that leaves the CPU on one and comes back on another may have
//! its return read before its departure. Each thread's last returns are kept, and a departure
//! confirmed by its switch-out record (which follows the sample in the same ring, and says
//! whether it was a preemption) is paired with the first return after it, whichever came first.
//!
//! Threads already waiting when the window opens are parked with the stack a snapshot found
//! (blocked threads' stacks are read without stopping them), and threads still waiting when it
//! closes are counted up to its end: a thread blocked for the whole window shows, as in fgprof.

use std::collections::{HashMap, VecDeque};

use crate::sampler::{Record, Sample};
use crate::unwind::Registers;

/// Threads kept parked at most (a target has fewer threads than this).
const MAX_PARKED: usize = 1 << 16;
/// Stack bytes kept parked at most: a target with thousands of blocked threads must not make
/// the agent hold a stack copy for each beyond this (the rest are counted, not profiled).
const MAX_PARKED_BYTES: usize = 128 << 20;
/// Returns remembered per thread, for departures read after them.
const RECENT_RETURNS: usize = 8;

/// A wait that ended (or was cut by the window's end).
pub struct Wait {
    pub tid: u32,
    pub regs: Registers,
    pub stack: Vec<u8>,
    pub off_cpu: OffCpu,
}

/// How long a thread was away, and how many such waits its sample stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffCpu {
    /// When the thread left the CPU (CLOCK_MONOTONIC ns; the window's start if it was
    /// already away).
    pub since: u64,
    pub nanoseconds: u64,
    pub weight: u64,
    /// No wait: the thread was preempted, and waited for a CPU.
    pub runnable: bool,
}

/// A thread off the CPU, with the stack it left with.
struct Parked {
    regs: Registers,
    stack: Vec<u8>,
    since: u64,
    /// The switches it stands for: this one, and those of the thread not sampled since its
    /// last sample (every switch writes a record; only some are sampled).
    weight: u64,
    /// Its switch-out record was read and was no preemption (or one, noted as runnable): a
    /// return ends it.
    confirmed: bool,
    /// Left preempted, still runnable.
    runnable: bool,
}

/// Pairs switch-out samples with switch-in records.
#[derive(Default)]
pub struct Tracker {
    parked: HashMap<u32, Parked>,
    /// Each thread's last returns to the CPU (oldest first) not yet paired with a departure.
    returns: HashMap<u32, VecDeque<u64>>,
    /// Sampled switch-outs that were preemptions, not waits.
    pub preempted: u64,
    /// Switch-out records of each thread since its last sample: what its next one stands for.
    unsampled: HashMap<u32, u64>,
    /// Stack bytes held by parked waits.
    parked_bytes: usize,
    /// Waits dropped because records were lost while they were open.
    pub abandoned: u64,
    /// Waits not tracked because too many stacks were held already.
    pub untracked: u64,
    /// Preempted switches are timed as runnable time instead of dropped (`wall`).
    runnable: bool,
}

impl Tracker {
    /// A tracker that also times preemptions, as runnable time, with `runnable`.
    pub fn new(runnable: bool) -> Tracker {
        Tracker {
            runnable,
            ..Tracker::default()
        }
    }

    /// Preemptions are timed as runnable time.
    pub fn times_runnable(&self) -> bool {
        self.runnable
    }

    /// `tid` was already off the CPU at `since` (the window's start), with this stack.
    pub fn park(&mut self, tid: u32, regs: Registers, stack: Vec<u8>, since: u64) {
        self.insert(
            tid,
            Parked {
                regs,
                stack,
                since,
                weight: 1,
                confirmed: true,
                runnable: false,
            },
        );
    }

    /// Follows one record; a wait that ends here goes to `done`.
    pub fn record(&mut self, record: &Record<'_>, mut done: impl FnMut(Wait)) {
        match *record {
            Record::Sample(ref sample) => self.left(sample),
            Record::Switch {
                tid,
                out: true,
                preempt,
                ..
            } => self.switched_out(tid, preempt, &mut done),
            Record::Switch {
                tid,
                out: false,
                time,
                ..
            } => self.switched_in(tid, time, &mut done),
            Record::Exit { tid, .. } => {
                self.release(tid);
                self.returns.remove(&tid);
                self.unsampled.remove(&tid);
            }
            // A full ring dropped records: the return that ends a parked wait may be among
            // them, and the wait would run on to a later one. Drop what is open instead.
            Record::Lost { .. } => {
                self.abandoned += self.parked.len() as u64;
                self.parked.clear();
                self.parked_bytes = 0;
                self.returns.clear();
            }
            _ => {}
        }
    }

    /// The switch-out record that follows a sample: a preemption is no wait; a wait may have
    /// had its return read already.
    fn switched_out(&mut self, tid: u32, preempt: bool, done: &mut impl FnMut(Wait)) {
        let unsampled = self.unsampled.entry(tid).or_default();
        *unsampled = unsampled.saturating_add(1);
        let Some(parked) = self.parked.get_mut(&tid).filter(|parked| !parked.confirmed) else {
            return;
        };
        // This record is the sample's own: it stands for the switches since the last one.
        parked.weight = std::mem::take(unsampled).max(1);
        parked.confirmed = true;
        parked.runnable = preempt;
        let since = parked.since;
        if preempt && !self.runnable {
            self.release(tid);
            self.preempted += 1;
        } else if let Some(back) = self.take_return(tid, since) {
            if let Some(parked) = self.release(tid) {
                done(parked.ended(tid, back));
            }
        }
    }

    /// `tid` is back on a CPU at `time`: the end of its wait, or a return to remember for a
    /// departure not read yet.
    fn switched_in(&mut self, tid: u32, time: u64, done: &mut impl FnMut(Wait)) {
        let ends = self
            .parked
            .get(&tid)
            .is_some_and(|parked| parked.confirmed && parked.since <= time);
        if ends {
            if let Some(parked) = self.release(tid) {
                done(parked.ended(tid, time));
            }
        } else {
            // A departure not confirmed yet (its record is still to be read) or none.
            self.remember_return(tid, time);
        }
    }

    /// The window closed at `until`: every thread still away has waited until then.
    pub fn finish(&mut self, until: u64, mut done: impl FnMut(Wait)) {
        self.parked_bytes = 0;
        for (tid, parked) in self.parked.drain() {
            if parked.confirmed {
                done(parked.ended(tid, until));
            }
        }
    }

    /// The first remembered return of `tid` after `since`, forgetting it and the older ones.
    fn take_return(&mut self, tid: u32, since: u64) -> Option<u64> {
        let returns = self.returns.get_mut(&tid)?;
        while let Some(back) = returns.pop_front() {
            if back >= since {
                return Some(back);
            }
        }
        None
    }

    fn remember_return(&mut self, tid: u32, time: u64) {
        if self.returns.len() >= MAX_PARKED && !self.returns.contains_key(&tid) {
            return;
        }
        let returns = self.returns.entry(tid).or_default();
        if returns.len() >= RECENT_RETURNS {
            returns.pop_front();
        }
        returns.push_back(time);
    }

    /// A switch-out sample: the thread leaves the CPU now, with this stack.
    fn left(&mut self, sample: &Sample<'_>) {
        if !sample.user_regs_available {
            return;
        }
        let parked = Parked {
            regs: Registers {
                ip: sample.ip,
                sp: sample.sp,
                bp: sample.bp,
            },
            stack: sample.stack.to_vec(),
            since: sample.time,
            weight: 1,
            confirmed: false,
            runnable: false,
        };
        self.insert(sample.tid, parked);
    }

    fn insert(&mut self, tid: u32, parked: Parked) {
        self.release(tid);
        if self.parked.len() >= MAX_PARKED
            || self.parked_bytes.saturating_add(parked.stack.len()) > MAX_PARKED_BYTES
        {
            self.untracked += 1;
            return;
        }
        self.parked_bytes += parked.stack.len();
        self.parked.insert(tid, parked);
    }

    fn release(&mut self, tid: u32) -> Option<Parked> {
        let parked = self.parked.remove(&tid)?;
        self.parked_bytes = self.parked_bytes.saturating_sub(parked.stack.len());
        Some(parked)
    }
}

impl Parked {
    fn ended(self, tid: u32, at: u64) -> Wait {
        Wait {
            tid,
            regs: self.regs,
            stack: self.stack,
            off_cpu: OffCpu {
                since: self.since,
                nanoseconds: at.saturating_sub(self.since),
                weight: self.weight,
                runnable: self.runnable,
            },
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A context-switch sample of thread `tid` at `time`.
    pub(in crate::kinds::waits) fn sample(tid: u32, time: u64, period: u64) -> Sample<'static> {
        Sample {
            pid: 1,
            tid,
            time,
            period,
            ip: 0x10,
            sp: 0x20,
            bp: 0,
            user_regs_available: true,
            stack: &[1, 2, 3],
            kernel_callchain: &[],
            raw: &[],
            id: 0,
        }
    }

    fn switch(tid: u32, time: u64, out: bool, preempt: bool) -> Record<'static> {
        Record::Switch {
            pid: 1,
            tid,
            time,
            out,
            preempt,
        }
    }

    #[test]
    fn a_switch_out_sample_and_the_switch_back_make_one_weighted_wait() {
        let mut tracker = Tracker::default();
        let mut waits = Vec::new();
        let records = [
            // Two switches not sampled, then a sampled one: it stands for all three.
            switch(7, 200, true, false),
            switch(7, 300, false, false),
            switch(7, 400, true, false),
            switch(7, 500, false, false),
            Record::Sample(sample(7, 1_000, 3)),
            switch(7, 1_000, true, false),
            switch(8, 1_500, false, false),
            switch(7, 5_000, false, false),
        ];
        for record in &records {
            tracker.record(record, |wait| waits.push((wait.tid, wait.off_cpu)));
        }
        assert_eq!(
            waits,
            vec![(
                7,
                OffCpu {
                    since: 1_000,
                    nanoseconds: 4_000,
                    weight: 3,
                    runnable: false,
                }
            )]
        );
    }

    #[test]
    fn a_return_read_before_the_departure_still_ends_the_wait() {
        let mut tracker = Tracker::default();
        let mut waits = Vec::new();
        let records = [
            // The return, on another CPU's ring, is read first.
            switch(7, 5_000, false, false),
            Record::Sample(sample(7, 1_000, 1)),
            switch(7, 1_000, true, false),
            // A later departure waits for its own return.
            Record::Sample(sample(7, 6_000, 1)),
            switch(7, 6_000, true, false),
            switch(7, 6_500, false, false),
        ];
        for record in &records {
            tracker.record(record, |wait| waits.push(wait.off_cpu.nanoseconds));
        }
        assert_eq!(waits, vec![4_000, 500]);
    }

    #[test]
    fn lost_records_drop_the_open_waits_rather_than_stretch_them() {
        let mut tracker = Tracker::default();
        let mut waits = Vec::new();
        tracker.record(&Record::Sample(sample(7, 1_000, 1)), |w| waits.push(w.tid));
        tracker.record(&switch(7, 1_000, true, false), |w| waits.push(w.tid));
        // The return at 2_000 was in what the kernel dropped.
        tracker.record(&Record::Lost { count: 3 }, |w| waits.push(w.tid));
        tracker.record(&switch(7, 90_000, false, false), |w| waits.push(w.tid));
        assert!(waits.is_empty());
        assert_eq!(tracker.abandoned, 1);
    }

    #[test]
    fn preemptions_are_not_waits_and_the_window_end_cuts_open_waits() {
        let mut tracker = Tracker::default();
        let mut waits = Vec::new();
        tracker.record(&Record::Sample(sample(7, 1_000, 1)), |w| waits.push(w.tid));
        tracker.record(&switch(7, 1_000, true, true), |w| waits.push(w.tid));
        tracker.record(&switch(7, 2_000, false, false), |w| waits.push(w.tid));
        assert!(waits.is_empty());
        assert_eq!(tracker.preempted, 1);
        tracker.park(
            9,
            Registers {
                ip: 1,
                sp: 2,
                bp: 0,
            },
            vec![0; 8],
            500,
        );
        let mut cut = Vec::new();
        tracker.finish(10_500, |w| cut.push((w.tid, w.off_cpu.nanoseconds)));
        assert_eq!(cut, vec![(9, 10_000)]);
    }

    #[test]
    fn for_wall_a_preemption_is_timed_as_runnable_time() {
        let mut tracker = Tracker::new(true);
        let mut waits = Vec::new();
        tracker.record(&Record::Sample(sample(7, 1_000, 1)), |w| {
            waits.push(w.off_cpu)
        });
        tracker.record(&switch(7, 1_000, true, true), |w| waits.push(w.off_cpu));
        tracker.record(&switch(7, 2_500, false, false), |w| waits.push(w.off_cpu));
        assert_eq!(
            waits,
            vec![OffCpu {
                since: 1_000,
                nanoseconds: 1_500,
                weight: 1,
                runnable: true,
            }]
        );
        assert_eq!(tracker.preempted, 0);
    }
}
