//! Waits the kernel timed (`timer`): each drawn wait starts with a departure (the thread's
//! stack as it left) and ends with a record of when the thread left, when it came back and what
//! it stands for. A departure is paired with the end whose interval holds it.
//!
//! The two come from different rings, so either may be read first: each thread's unpaired
//! departures and ends are kept, a few of each, until the other side arrives.

use std::collections::{HashMap, VecDeque};

use super::timer::{self, End, StillAway};
use super::tracker::{OffCpu, Wait};
use crate::unwind::Registers;

/// Threads with unpaired samples or ends at most (a target has fewer threads than this).
const MAX_THREADS: usize = 1 << 16;
/// Stack bytes held by unpaired samples at most (the rest are counted, not profiled).
const MAX_HELD_BYTES: usize = 128 << 20;
/// Unpaired departures kept per thread: those of waits still open when the rings are read.
const PER_THREAD: usize = 32;
/// Unpaired ends kept per thread. Ends are read before departures, so each thread's ends of a
/// whole read are held until its departures are read just after: 5 000 a second at the
/// sampling budget, ~125 per 25 ms read, more when a read is late. An end whose departure
/// never comes (the kernel sends none for a stack it could not copy) makes room at the limit.
const ENDS_PER_THREAD: usize = 4096;
/// Unpaired ends kept, all threads together. Ends are read before samples, so a pump's worth
/// of each thread's drawn waits is held until its samples are read just after (up to the
/// sampling budget times the pump's interval); 32 bytes each.
const MAX_ENDS: usize = 1 << 16;

/// A sampled departure waiting for its end.
struct Departure {
    regs: Registers,
    stack: Vec<u8>,
    /// When the thread left (the wait's start, as the kernel noted it), or the window's start
    /// for a thread already waiting then.
    time: u64,
    /// Already waiting when the window opened: its wait counts from then.
    parked: bool,
}

/// Pairs the departures the kernel copies with the ends it sends.
#[derive(Default)]
pub struct TimedTracker {
    departures: HashMap<u32, VecDeque<Departure>>,
    ends: HashMap<u32, VecDeque<End>>,
    /// Ends held in `ends`.
    held_ends: usize,
    held_bytes: usize,
    /// Samples dropped unpaired: their end was lost, or never came.
    pub abandoned: u64,
    /// Samples not kept because too many stacks were held already.
    pub untracked: u64,
}

impl TimedTracker {
    /// `tid` was already off the CPU at `since` (the window's start), with this stack; the
    /// kernel was told (`KernelTimer::park`) and sends its end like any other.
    pub fn park(&mut self, tid: u32, regs: Registers, stack: Vec<u8>, since: u64) {
        self.hold(
            tid,
            Departure {
                regs,
                stack,
                time: since,
                parked: true,
            },
        );
    }

    /// A departure the kernel sent: it completes the end read before it, or waits for it.
    pub fn departed(&mut self, departure: timer::StackCopy, mut done: impl FnMut(Wait)) {
        let held = Departure {
            regs: departure.regs,
            stack: departure.stack,
            time: departure.time,
            parked: false,
        };
        match self.take_end(departure.tid, departure.time) {
            Some(end) => done(held.timed(end)),
            None => self.hold(departure.tid, held),
        }
    }

    /// An end the kernel sent: it completes the departure sampled within it, or waits for it.
    pub fn ended(&mut self, end: End, mut done: impl FnMut(Wait)) {
        if let Some(departure) = self.take_departure(&end) {
            done(departure.timed(end));
            return;
        }
        if self.held_ends >= MAX_ENDS
            || (self.ends.len() >= MAX_THREADS && !self.ends.contains_key(&end.tid))
        {
            // Its sample, if it comes, is left unpaired (counted then).
            return;
        }
        let ends = self.ends.entry(end.tid).or_default();
        if ends.len() >= ENDS_PER_THREAD {
            // The oldest lost its departure (or never had one).
            ends.pop_front();
            self.held_ends = self.held_ends.saturating_sub(1);
        }
        self.held_ends += 1;
        ends.push_back(end);
    }

    /// The window closed at `until`: a thread still away on the wait of its last sample
    /// (`away` tells since when, its weight, and whether it is runnable) has waited until then;
    /// other unpaired samples lost their end.
    pub fn finish(
        &mut self,
        until: u64,
        away: impl Fn(u32) -> Option<StillAway>,
        mut done: impl FnMut(Wait),
    ) {
        self.held_bytes = 0;
        self.ends.clear();
        self.held_ends = 0;
        for (tid, mut departures) in self.departures.drain() {
            let Some(last) = departures.pop_back() else {
                continue;
            };
            self.abandoned += departures.len() as u64;
            match away(tid) {
                Some(away) if away.since <= last.time => done(last.timed(End {
                    tid,
                    weight: away.weight,
                    since: away.since,
                    until: until.max(away.since),
                    runnable: away.runnable,
                })),
                _ => self.abandoned += 1,
            }
        }
    }

    /// The held departure of `end`'s thread within its interval; older ones lost their end.
    fn take_departure(&mut self, end: &End) -> Option<Departure> {
        let departures = self.departures.get_mut(&end.tid)?;
        let index = departures
            .iter()
            .position(|d| end.since <= d.time && d.time <= end.until)?;
        let mut older: Vec<Departure> = departures.drain(..=index).collect();
        let found = older.pop();
        self.abandoned += older.len() as u64;
        let freed: usize = older.iter().chain(&found).map(|d| d.stack.len()).sum();
        self.held_bytes = self.held_bytes.saturating_sub(freed);
        if departures.is_empty() {
            self.departures.remove(&end.tid);
        }
        found
    }

    /// The remembered end of `tid` whose interval holds `time`; older ones lost their sample.
    fn take_end(&mut self, tid: u32, time: u64) -> Option<End> {
        let ends = self.ends.get_mut(&tid)?;
        let index = ends
            .iter()
            .position(|end| end.since <= time && time <= end.until)?;
        let found = ends.drain(..=index).next_back();
        self.held_ends = self.held_ends.saturating_sub(index + 1);
        if ends.is_empty() {
            self.ends.remove(&tid);
        }
        found
    }

    fn hold(&mut self, tid: u32, departure: Departure) {
        let bytes = departure.stack.len();
        if (self.departures.len() >= MAX_THREADS && !self.departures.contains_key(&tid))
            || self.held_bytes.saturating_add(bytes) > MAX_HELD_BYTES
        {
            self.untracked += 1;
            return;
        }
        let departures = self.departures.entry(tid).or_default();
        if departures.len() >= PER_THREAD {
            if let Some(oldest) = departures.pop_front() {
                self.held_bytes = self.held_bytes.saturating_sub(oldest.stack.len());
                self.abandoned += 1;
            }
        }
        self.held_bytes += bytes;
        departures.push_back(departure);
    }

    /// Thread `tid` exited: what is held of it is dropped.
    pub fn forget(&mut self, tid: u32) {
        if let Some(departures) = self.departures.remove(&tid) {
            let freed: usize = departures.iter().map(|d| d.stack.len()).sum();
            self.held_bytes = self.held_bytes.saturating_sub(freed);
            self.abandoned += departures.len() as u64;
        }
        if let Some(ends) = self.ends.remove(&tid) {
            self.held_ends = self.held_ends.saturating_sub(ends.len());
        }
    }
}

impl Departure {
    /// The wait as the kernel timed it: from when the thread left to its return.
    fn timed(self, end: End) -> Wait {
        let since = if self.parked {
            end.since.max(self.time)
        } else {
            end.since
        };
        Wait {
            tid: end.tid,
            regs: self.regs,
            stack: self.stack,
            off_cpu: OffCpu {
                since,
                nanoseconds: end.until.saturating_sub(since),
                weight: end.weight.max(1),
                runnable: end.runnable,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel sends as `tid` leaves the CPU at `time`.
    fn departure(tid: u32, time: u64) -> timer::StackCopy {
        timer::StackCopy {
            tid,
            time,
            regs: Registers {
                ip: 0x40_1000,
                sp: 0x7fff_0000,
                bp: 0,
            },
            stack: vec![0; 64],
            woke: None,
        }
    }

    /// Registers of a thread parked at the window's start (never unwound here).
    fn parked_regs() -> Registers {
        Registers {
            ip: 1,
            sp: 2,
            bp: 0,
        }
    }

    fn end(tid: u32, since: u64, until: u64, weight: u64) -> End {
        End {
            tid,
            weight,
            since,
            until,
            runnable: false,
        }
    }

    #[test]
    fn a_sample_and_its_end_make_one_wait_whichever_is_read_first() {
        let mut tracker = TimedTracker::default();
        let mut waits = Vec::new();
        tracker.departed(departure(7, 1_010), |w| waits.push(w.off_cpu));
        tracker.ended(end(7, 1_000, 5_000, 4), |w| waits.push(w.off_cpu));
        // The next wait's end is read before its sample.
        tracker.ended(end(7, 6_000, 6_500, 1), |w| waits.push(w.off_cpu));
        tracker.departed(departure(7, 6_002), |w| waits.push(w.off_cpu));
        assert_eq!(
            waits,
            vec![
                OffCpu {
                    since: 1_000,
                    nanoseconds: 4_000,
                    weight: 4,
                    runnable: false,
                },
                OffCpu {
                    since: 6_000,
                    nanoseconds: 500,
                    weight: 1,
                    runnable: false,
                }
            ]
        );
        assert_eq!(tracker.abandoned, 0);
    }

    #[test]
    fn a_later_sample_read_before_the_earlier_end_does_not_take_its_place() {
        let mut tracker = TimedTracker::default();
        let mut waits = Vec::new();
        tracker.departed(departure(7, 1_010), |w| waits.push(w.off_cpu));
        tracker.departed(departure(7, 3_010), |w| waits.push(w.off_cpu));
        tracker.ended(end(7, 1_000, 2_000, 1), |w| waits.push(w.off_cpu));
        tracker.ended(end(7, 3_000, 9_000, 1), |w| waits.push(w.off_cpu));
        let lengths: Vec<u64> = waits.iter().map(|w| w.nanoseconds).collect();
        assert_eq!(lengths, vec![1_000, 6_000]);
    }

    #[test]
    fn a_sample_whose_end_was_lost_is_dropped_not_stretched() {
        let mut tracker = TimedTracker::default();
        let mut waits = Vec::new();
        tracker.departed(departure(7, 1_010), |w| waits.push(w.off_cpu));
        // Its end (1_000..2_000) was dropped; the next wait's end comes.
        tracker.departed(departure(7, 3_010), |w| waits.push(w.off_cpu));
        tracker.ended(end(7, 3_000, 4_000, 1), |w| waits.push(w.off_cpu));
        assert_eq!(waits.len(), 1);
        assert_eq!(waits[0].nanoseconds, 1_000);
        assert_eq!(tracker.abandoned, 1);
    }

    #[test]
    fn a_pumps_worth_of_ends_read_before_their_samples_all_pair() {
        let mut tracker = TimedTracker::default();
        let mut waits = Vec::new();
        // 500 waits of one thread, their ends read first (as the pump reads them).
        for k in 0..500u64 {
            tracker.ended(end(7, k * 1_000, k * 1_000 + 600, 1), |w| waits.push(w));
        }
        for k in 0..500u64 {
            tracker.departed(departure(7, k * 1_000 + 5), |w| waits.push(w));
        }
        assert_eq!(waits.len(), 500);
        assert!(waits.iter().all(|w| w.off_cpu.nanoseconds == 600));
        assert_eq!(tracker.held_ends, 0);
    }

    #[test]
    fn a_thread_already_waiting_counts_from_the_windows_start() {
        let mut tracker = TimedTracker::default();
        tracker.park(9, parked_regs(), vec![0; 8], 5_000);
        let mut waits = Vec::new();
        // Its wait began before the window (the program was loaded a moment earlier).
        tracker.ended(end(9, 1_000, 8_000, 1), |w| waits.push(w.off_cpu));
        assert_eq!(
            waits,
            vec![OffCpu {
                since: 5_000,
                nanoseconds: 3_000,
                weight: 1,
                runnable: false,
            }]
        );
    }

    #[test]
    fn the_window_end_cuts_a_thread_still_away_and_drops_the_rest() {
        let mut tracker = TimedTracker::default();
        tracker.park(9, parked_regs(), vec![0; 8], 500);
        tracker.departed(departure(7, 1_010), |_| {});
        let mut cut = Vec::new();
        let away = |tid: u32| {
            (tid == 9).then_some(StillAway {
                since: 500,
                weight: 1,
                runnable: false,
                parked: true,
            })
        };
        tracker.finish(10_500, away, |w| cut.push((w.tid, w.off_cpu.nanoseconds)));
        assert_eq!(cut, vec![(9, 10_000)]);
        assert_eq!(tracker.abandoned, 1, "7's end never came and it is back");
    }
}
