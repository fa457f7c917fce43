//! How a recording times its waits: in the kernel where a BPF program can be loaded (`timer`,
//! paired by `timed`), else from a record of every context switch (`tracker`). Both give the
//! same [`Wait`]s; this is the one place that tells them apart.

use anyhow::Result;

use super::period::Period;
use super::timed::TimedTracker;
use super::timer::{KernelTimer, Noting, StackCopy, Totals};
use super::tracker::{Tracker, Wait};
use crate::proc::thread_state;
use crate::sampler::Record;
use crate::unwind::Registers;

/// Set to `records` to time waits from switch records even where BPF works (to compare the
/// two, or to avoid loading a program).
const FORCE_RECORDS: &str = "RPROF_WAITS_TIMING";
/// How long the rate of waits is measured before sampling starts (kernel timing).
const WARM_UP: std::time::Duration = std::time::Duration::from_millis(50);

pub enum Timing {
    /// Every switch writes a record; `why` the kernel does not time the waits.
    Records { tracker: Tracker, why: String },
    /// The kernel times the waits; `timer` is `None` once stopped (the program detached).
    Kernel {
        /// The target.
        pid: u32,
        timer: Option<Box<KernelTimer>>,
        tracker: TimedTracker,
        /// The program's totals: when last read for the period, and at the stop.
        seen: Totals,
    },
}

impl Timing {
    /// In the kernel if the BPF program loads for `pid` (noting and copying what `noting`
    /// says), else by records (saying why).
    pub fn choose(pid: u32, noting: Noting) -> Timing {
        if std::env::var(FORCE_RECORDS).is_ok_and(|value| value == "records") {
            return Timing::from_records(format!("{FORCE_RECORDS}=records"), noting);
        }
        match KernelTimer::load(pid, noting) {
            Ok(timer) => Timing::Kernel {
                pid,
                timer: Some(Box::new(timer)),
                tracker: TimedTracker::default(),
                seen: Totals::default(),
            },
            Err(err) => {
                tracing::debug!("waits timed by switch records: {err:#}");
                Timing::from_records(crate::ebpf::in_one_line(&format!("{err:#}")), noting)
            }
        }
    }

    /// Timing from records, because of `why` (preemptions timed as runnable time as `noting`
    /// says).
    pub fn from_records(why: String, noting: Noting) -> Timing {
        Timing::Records {
            tracker: Tracker::new(noting.runnable),
            why,
        }
    }

    pub fn in_kernel(&self) -> bool {
        matches!(self, Timing::Kernel { .. })
    }

    /// The kernel's timer, while it times the waits.
    fn timer(&self) -> Option<&KernelTimer> {
        match self {
            Timing::Kernel { timer, .. } => timer.as_deref(),
            Timing::Records { .. } => None,
        }
    }

    fn timer_mut(&mut self) -> Option<&mut KernelTimer> {
        match self {
            Timing::Kernel { timer, .. } => timer.as_deref_mut(),
            Timing::Records { .. } => None,
        }
    }

    /// The filter that keeps the target's ticks of per-CPU CPU-time events (kernel timing
    /// only: else `wall` samples CPU time with events of the target's own threads).
    pub fn target_filter(&self) -> Result<Option<i32>> {
        self.timer().map(KernelTimer::target_filter).transpose()
    }

    /// `tid` was already waiting at `since` (the window's start), with this stack.
    pub fn park(&mut self, tid: u32, regs: Registers, stack: Vec<u8>, since: u64) {
        match self {
            Timing::Records { tracker, .. } => tracker.park(tid, regs, stack, since),
            Timing::Kernel { timer, tracker, .. } => {
                if let Some(timer) = timer {
                    timer.park(tid, since);
                    tracker.park(tid, regs, stack, since);
                }
            }
        }
    }

    /// Follows a record of the context-switch sampler (records: counting switch-outs for
    /// `period`); the kernel's timing takes nothing from the side-band sampler's records but
    /// exits, which come later (`exited`).
    pub fn record(&mut self, record: &Record<'_>, period: &mut Period, done: impl FnMut(Wait)) {
        if let Timing::Records { tracker, .. } = self {
            if let Record::Switch { out: true, .. } = record {
                period.switched(1);
            }
            tracker.record(record, done);
        }
    }

    /// Thread `tid` exited: what is held of it waits for nothing more.
    pub fn exited(&mut self, tid: u32) {
        if let Timing::Kernel { tracker, .. } = self {
            tracker.forget(tid);
        }
    }

    /// Reads the ends and stacks the kernel sent (kernel timing): completed waits go to `done`,
    /// the stacks of threads that woke one to `woke`. Counts the waits for `period`.
    pub fn collect(
        &mut self,
        period: &mut Period,
        mut done: impl FnMut(Wait),
        mut woke: impl FnMut(StackCopy),
    ) {
        let Timing::Kernel {
            timer: Some(timer),
            tracker,
            seen,
            ..
        } = self
        else {
            return;
        };
        pair(timer, tracker, &mut done, &mut woke);
        let totals = timer.totals();
        period.switched(totals.noted().saturating_sub(seen.noted()));
        *seen = totals;
    }

    /// Kernel timing: measures the target's rate of waits for a moment before its samples
    /// start, and starts `period` there (else the first interval would sample every wait of
    /// a busy target, and overflow the rings).
    pub fn warm_up(&mut self, period: &mut Period) {
        if let Some(timer) = self.timer_mut() {
            let rate = timer.measure_rate(WARM_UP);
            timer.set_period(period.start_at(rate));
        }
    }

    /// Samples 1 switch (records) or wait (kernel) in `period` from now on.
    pub fn set_period(&mut self, period: u64) {
        if let Some(timer) = self.timer_mut() {
            timer.set_period(period);
        }
    }

    /// The window closed at `until`: ends what is still open, and detaches the program (the
    /// last wakers' stacks go to `woke`).
    pub fn finish(
        &mut self,
        until: u64,
        mut done: impl FnMut(Wait),
        mut woke: impl FnMut(StackCopy),
    ) {
        match self {
            Timing::Records { tracker, .. } => tracker.finish(until, done),
            Timing::Kernel {
                pid,
                timer,
                tracker,
                seen,
            } => {
                let Some(mut timer) = timer.take() else {
                    return;
                };
                pair(&mut timer, tracker, &mut done, &mut woke);
                *seen = timer.totals();
                // A thread parked as waiting at the start that woke before the program noted
                // it, and has run since without leaving the CPU, is not away: its state says.
                // What the program noted itself is away until it switches back in, 'R' or not
                // (woken, it may still wait for a CPU).
                let away = |tid| {
                    timer
                        .still_away(tid)
                        .filter(|away| !away.parked || thread_state(*pid, tid) != Some('R'))
                };
                tracker.finish(until, away, done);
            }
        }
    }

    /// What the profile's comments say of how waits were timed and what was dropped.
    pub fn comments(&self, budget: u64) -> Vec<String> {
        match self {
            Timing::Records { tracker, why } => vec![
                format!(
                    "event: context-switches, every switch sampled up to {budget} switches/s, 1 \
                     in N beyond (N re-drawn at random around the rate over the budget every \
                     250 ms), each sample weighted by the switches its thread made since its \
                     previous one; waits timed by a record of every switch (not in the kernel: \
                     {why})"
                ),
                format!(
                    "preemptions (not waits) {}; open waits dropped when records were lost: {}, \
                     not tracked (too many stacks held): {}",
                    if tracker.times_runnable() {
                        "timed as runnable time".to_owned()
                    } else {
                        format!("skipped: {}", tracker.preempted)
                    },
                    tracker.abandoned,
                    tracker.untracked
                ),
            ],
            Timing::Kernel { tracker, seen, .. } => vec![
                format!(
                    "event: context-switches into a wait, timed in the kernel (a BPF program at \
                     sched:sched_switch; preemptions are not waits, and for wall are drawn with \
                     them as runnable time): every wait up to {budget} waits/s sampled with its \
                     stack (copied by the program), 1 in N beyond (each wait drawn at random, N \
                     from the rate every 250 ms), each sample weighted by N"
                ),
                format!(
                    "all waits that ended, timed in the kernel: {}, off-CPU {:.3}s; sampled \
                     waits whose end the agent's ring had no room for: {}, whose stack could not \
                     be read or sent: {}; samples left unpaired (their end lost): {}; waits not \
                     tracked: {} (too many stacks held), {} (the kernel's table had another \
                     thread in their slot)",
                    seen.waits,
                    seen.nanoseconds as f64 / 1e9,
                    seen.dropped,
                    seen.unsampled,
                    tracker.abandoned,
                    tracker.untracked,
                    seen.untracked
                ),
            ]
            .into_iter()
            .chain((seen.preemptions > 0).then(|| {
                format!(
                    "preemptions (time runnable off the CPU, no wait) noted and sampled as \
                     waits are: {}, {:.3}s",
                    seen.preemptions,
                    seen.runnable_ns as f64 / 1e9
                )
            }))
            .collect(),
        }
    }
}

/// Reads the kernel's ends, then its stacks: a departure is sent before its end, so every end
/// read now has its departure in the ring read next; only waits still open when the rings are
/// read wait for a later call. Wakers' stacks go to `woke`.
fn pair(
    timer: &mut KernelTimer,
    tracker: &mut TimedTracker,
    done: &mut impl FnMut(Wait),
    woke: &mut impl FnMut(StackCopy),
) {
    timer.drain(|end| tracker.ended(end, &mut *done));
    timer.drain_stacks(|copy| match copy.woke {
        Some(_) => woke(copy),
        None => tracker.departed(copy, &mut *done),
    });
}
