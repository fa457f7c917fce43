//! How much the probes slowed each thread of the target. Inside a window every allocation
//! traps (~7 µs with its free on these VMs, against tens of nanoseconds without), and a thread
//! whose work is paced by its own progress (a loop that computes, a batch job, a worker that
//! sleeps between items, threads taking turns at a lock such as CPython's GIL) does less of its
//! work inside windows than outside: the share of time windows were open overstates the share
//! of its allocations they saw. A thread paced from outside (a server waiting for requests)
//! does the same work per second inside windows as outside, on more CPU time.
//!
//! Both are measured the same way, from schedstat (nanoseconds): a thread's own work inside
//! windows is its CPU time there less its traps' (allocations seen × the cost of one), and its
//! rate of own work inside windows over its rate of CPU use outside ([`Pace::own_shares`]) is
//! 1 for a thread paced from outside and less for one the traps slowed; its figures are
//! scaled by it (`ledger.rs`). Where traps took over half of its usual rate (an allocator
//! running flat out: ×25–×500 slower inside windows), the correction rests on the trap cost
//! more than on what was measured: it is taken no further than [`MIN_OWN_SHARE`], and the
//! figures are called lower bounds.
//!
//! What a trap costs is measured on the threads with idle time: what they spend on the CPU
//! inside windows beyond their usual share, per allocation seen ([`Pace::cost_per_hit`]). For
//! threads paced from outside that is the cost; a thread slowed by its traps spends less than
//! that on the CPU, so the measure is at most the cost, and a correction made with it never
//! scales figures up by more than the traps took.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Threads followed per window at most (two /proc reads each per window).
const MAX_THREADS: usize = 256;
/// A thread runnable (on the CPU or waiting for it) this share of its window time has no idle
/// time to measure what a trap costs on.
const SATURATED: f64 = 0.9;
/// A thread on the CPU less than this share of the time outside windows is not corrected: its
/// rates are too small to compare.
const MIN_CPU_SHARE: f64 = 0.02;
/// Window time a thread must have been seen in before it is judged.
const MIN_OBSERVED_NS: u64 = 10_000_000;
/// A thread keeps its pace, for measuring what a trap costs, if it is on the CPU less than
/// this share of the time outside windows and runnable less than [`SATURATED`] inside them.
const KEEPS_PACE: f64 = 0.5;
/// Calls the threads with idle time must have been seen making before their cost is trusted,
/// and the range it is trusted in (design-notes §8: 0.5 µs for a bare trap, 18 µs for a
/// single-stepped one; more with stack copies).
const MIN_CALIBRATION_CALLS: f64 = 2000.0;
const COST_RANGE_NS: (f64, f64) = (300.0, 100_000.0);
/// How well a trap's cost is known, relatively, and the error in a thread's own share that
/// this may cause before the share is left unmeasured.
const COST_UNCERTAINTY: f64 = 0.25;
const MAX_OWN_ERROR: f64 = 0.1;
/// Threads followed at most (a target that keeps starting threads would grow these tables).
const MAX_TRACKED: usize = 4096;
/// The least own share a correction takes: below it, figures are lower bounds.
pub const MIN_OWN_SHARE: f64 = 0.5;

/// A thread's schedstat: nanoseconds on the CPU, and waiting for it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Sched {
    cpu: u64,
    wait: u64,
}

/// How the probes slowed one thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slowing {
    /// The share of its usual work per second it kept inside windows (1 where not measured).
    pub own: f64,
    /// The share of its window time its traps took.
    pub traps: f64,
    /// Whether `own` was measured: not where the trap cost's uncertainty, over the thread's
    /// small CPU share, would decide it.
    pub measured: bool,
    /// Runnable nearly all of its window time.
    pub saturated: bool,
}

/// What windows saw of one thread.
#[derive(Debug, Default, Clone, Copy)]
struct Inside {
    sched: Sched,
    window_ns: u64,
    /// Calls seen, allocations and frees (records lost counted in).
    calls: f64,
}

/// (CLOCK_MONOTONIC ns, the thread's CPU ns then).
type Reading = (u64, u64);

/// CPU time of the target's threads inside windows.
#[derive(Debug, Default)]
pub struct Pace {
    inside: HashMap<u32, Inside>,
    /// Per thread: (time, CPU ns) when first and last read.
    span: HashMap<u32, (Reading, Reading)>,
    /// The open window's threads with their schedstat at its opening, and when it opened.
    open: Vec<(u32, Sched)>,
    opened_at: u64,
    /// The threads followed through the window that closed last: its hits are theirs.
    last_followed: HashSet<u32>,
}

impl Pace {
    /// A window opened at `at` (CLOCK_MONOTONIC ns) on `tids` of process `pid`.
    pub fn opened(&mut self, pid: u32, tids: &[u32], at: u64) {
        self.opened_at = at;
        self.open = tids
            .iter()
            .take(MAX_THREADS)
            .filter_map(|&tid| Some((tid, sched(pid, tid)?)))
            .collect();
        for &(tid, now) in &self.open {
            if self.span.len() >= MAX_TRACKED && !self.span.contains_key(&tid) {
                continue;
            }
            let span = self
                .span
                .entry(tid)
                .or_insert(((at, now.cpu), (at, now.cpu)));
            if now.cpu < span.1 .1 {
                // A new thread under a reused id: start over.
                *span = ((at, now.cpu), (at, now.cpu));
                self.inside.remove(&tid);
            }
            span.1 = (at, now.cpu);
        }
    }

    /// The window closed at `at`.
    pub fn closed(&mut self, pid: u32, at: u64) {
        let window = at.saturating_sub(self.opened_at);
        self.last_followed.clear();
        for (tid, before) in std::mem::take(&mut self.open) {
            let Some(after) = sched(pid, tid) else {
                continue;
            };
            if !self.span.contains_key(&tid) {
                continue; // Not tracked (too many threads).
            }
            let entry = self.inside.entry(tid).or_default();
            entry.sched.cpu += after.cpu.saturating_sub(before.cpu);
            entry.sched.wait += after.wait.saturating_sub(before.wait);
            entry.window_ns += window;
            if let Some(span) = self.span.get_mut(&tid) {
                span.1 = (at, after.cpu);
            }
            self.last_followed.insert(tid);
        }
    }

    /// The calls seen per thread (allocations and frees) in the window that closed last, each
    /// standing for `scale` (records were lost): counted for the threads followed through it.
    pub fn count_calls(&mut self, by_tid: &HashMap<u32, u64>, scale: f64) {
        for (tid, &calls) in by_tid {
            if self.last_followed.contains(tid) {
                if let Some(entry) = self.inside.get_mut(tid) {
                    entry.calls += calls as f64 * scale;
                }
            }
        }
    }

    /// What a call seen (an allocation or a free) costs the target inside windows, measured on
    /// its threads with idle time, but for `excluding`: their CPU time inside windows beyond
    /// their share outside, per call they were seen making (at most the cost: see the module's
    /// comment). `None` until they made enough, or if what they show is out of all reason.
    pub fn cost_per_call(&self, excluding: Option<u32>) -> Option<Duration> {
        let (mut extra_ns, mut calls) = (0.0, 0.0);
        for (&tid, inside) in &self.inside {
            if Some(tid) == excluding || inside.calls <= 0.0 {
                continue;
            }
            let Some((runnable, outside)) = self.shares(tid) else {
                continue;
            };
            if outside < KEEPS_PACE && runnable < SATURATED {
                extra_ns += inside.sched.cpu as f64 - outside * inside.window_ns as f64;
                calls += inside.calls;
            }
        }
        if calls < MIN_CALIBRATION_CALLS {
            return None;
        }
        let ns = extra_ns / calls;
        (COST_RANGE_NS.0..=COST_RANGE_NS.1)
            .contains(&ns)
            .then(|| Duration::from_nanos(ns as u64))
    }

    /// How the probes slowed each thread seen long enough, a call costing what the other
    /// threads show (`cost_per_call`), or `model_per_call`.
    pub fn slowing(&self, model_per_call: Duration) -> HashMap<u32, Slowing> {
        self.inside
            .iter()
            .filter(|(_, inside)| inside.window_ns >= MIN_OBSERVED_NS)
            .map(|(&tid, inside)| {
                let per_call = self.cost_per_call(Some(tid)).unwrap_or(model_per_call);
                let window = inside.window_ns as f64;
                let traps = (inside.calls * per_call.as_secs_f64() * 1e9 / window).min(1.0);
                (tid, self.slowed(tid, inside, traps))
            })
            .collect()
    }

    fn slowed(&self, tid: u32, inside: &Inside, traps: f64) -> Slowing {
        let unmeasured = Slowing {
            own: 1.0,
            traps,
            measured: false,
            saturated: false,
        };
        let Some((runnable, outside)) = self.shares(tid) else {
            return unmeasured;
        };
        let saturated = runnable >= SATURATED;
        if outside < MIN_CPU_SHARE {
            return Slowing {
                saturated,
                ..unmeasured
            };
        }
        // A thread is on one CPU at most; schedstat's tick-grained count can say more.
        let cpu_inside = (inside.sched.cpu as f64 / inside.window_ns as f64).min(1.0);
        let own = ((cpu_inside - traps) / outside).clamp(0.0, 1.0);
        // The trap cost is known to some 25 %; divided by a small CPU share, that error would
        // decide the result, unless the thread plainly ran flat out: traps took most of its
        // window time, or it was runnable all along and most of its work was gone. (schedstat
        // counts a running thread's time at scheduler ticks, so a short window's CPU time is
        // coarse: traps are the surer sign.)
        let flat_out = traps >= MIN_OWN_SHARE || (saturated && own < MIN_OWN_SHARE);
        let measured = COST_UNCERTAINTY * traps / outside <= MAX_OWN_ERROR || flat_out;
        Slowing {
            own: if measured { own } else { 1.0 },
            traps,
            measured,
            saturated,
        }
    }

    /// A thread's share of its window time it was runnable (on the CPU or waiting for it),
    /// and its share of time on the CPU outside windows, once it was seen long enough in both.
    fn shares(&self, tid: u32) -> Option<(f64, f64)> {
        let inside = self.inside.get(&tid)?;
        let &((t0, c0), (t1, c1)) = self.span.get(&tid)?;
        let time_out = t1.saturating_sub(t0).saturating_sub(inside.window_ns);
        let cpu_out = c1.saturating_sub(c0).saturating_sub(inside.sched.cpu);
        if inside.window_ns < MIN_OBSERVED_NS || time_out < MIN_OBSERVED_NS {
            return None;
        }
        let runnable = inside.sched.cpu.saturating_add(inside.sched.wait);
        Some((
            runnable as f64 / inside.window_ns as f64,
            cpu_out as f64 / time_out as f64,
        ))
    }
}

/// Thread `tid`'s schedstat so far, from `/proc/PID/task/TID/schedstat`: time on the CPU, time
/// waiting for it, timeslices.
fn sched(pid: u32, tid: u32) -> Option<Sched> {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text =
        rprof_symbolizer::proc_dir::read_text_lossy(std::path::Path::new(&path), 128).ok()?;
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<u64>().ok());
    Some(Sched {
        cpu: fields.next()??,
        wait: fields.next()??,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread seen for a second, 20 ms of it inside windows: (CPU ms and wait ms inside,
    /// calls seen), CPU ms in all.
    fn thread(pace: &mut Pace, tid: u32, inside: (u64, u64, f64), cpu_total_ms: u64) {
        let (cpu_ms, wait_ms, calls) = inside;
        let ms = 1_000_000;
        pace.inside.insert(
            tid,
            Inside {
                sched: Sched {
                    cpu: cpu_ms * ms,
                    wait: wait_ms * ms,
                },
                window_ns: 20 * ms,
                calls,
            },
        );
        pace.span
            .insert(tid, ((0, 0), (1000 * ms, cpu_total_ms * ms)));
    }

    #[test]
    fn the_share_of_its_work_a_thread_kept_inside_windows_is_measured() {
        let mut pace = Pace::default();
        // 1 s each; 20 ms of it inside windows; each call costs 3.5 µs.
        thread(&mut pace, 1, (19, 0, 280.0), 990); // never idle, slowed 10 %
        thread(&mut pace, 2, (9, 10, 4000.0), 450); // on a loaded machine, all traps
        thread(&mut pace, 4, (12, 0, 500.0), 600); // 60 % of a CPU outside, slowed
        thread(&mut pace, 5, (0, 0, 0.0), 10); // nearly idle: not compared
        thread(&mut pace, 7, (4, 0, 800.0), 100); // 10 % of a CPU, traps 14 %: unmeasurable
        thread(&mut pace, 9, (3, 0, 800.0), 100); // the same, its own share seemingly < 0.5
        thread(&mut pace, 10, (14, 0, 4000.0), 990); // traps took 70 %: flat out
        pace.inside.get_mut(&5).unwrap().window_ns = 1_000_000; // and seen too briefly
        let slowing = pace.slowing(Duration::from_nanos(3500));
        let mut tids: Vec<u32> = slowing.keys().copied().collect();
        tids.sort();
        assert_eq!(tids, [1, 2, 4, 7, 9, 10], "5: seen too briefly");
        let close = |tid: u32, expected: f64| {
            assert!(
                (slowing[&tid].own - expected).abs() < 1e-6,
                "{tid}: {slowing:?}"
            );
        };
        close(1, (19.0 - 0.98) / 20.0 / (971.0 / 980.0));
        close(2, 0.0);
        assert!(slowing[&2].measured && slowing[&2].saturated);
        close(4, (12.0 - 1.75) / 20.0 / (588.0 / 980.0));
        assert!(!slowing[&7].measured && slowing[&7].own == 1.0);
        assert!((slowing[&7].traps - 0.14).abs() < 1e-9);
        assert!(
            !slowing[&9].measured && slowing[&9].own == 1.0,
            "not flat out: idle most of the time"
        );
        assert!(slowing[&10].measured && slowing[&10].own < MIN_OWN_SHARE);
    }

    #[test]
    fn a_thread_paced_from_outside_keeps_its_whole_rate() {
        // Half a CPU outside windows; inside, the same half plus 3 ms of traps (1 000 calls of
        // 3 µs, measured on another thread with idle time).
        let mut pace = Pace::default();
        thread(&mut pace, 3, (10 + 3, 0, 1000.0), 490 + 13);
        thread(&mut pace, 8, (4 + 6, 0, 2000.0), 196 + 10);
        let slowing = pace.slowing(Duration::from_micros(7));
        assert!((slowing[&3].own - 1.0).abs() < 1e-9, "{slowing:?}");
        assert!(!slowing[&3].saturated);
    }

    #[test]
    fn what_a_trap_costs_is_measured_on_the_threads_with_idle_time() {
        let mut pace = Pace::default();
        // 20 % of a CPU outside windows; inside, 20 % + 8 ms of traps for 2 000 calls.
        thread(&mut pace, 1, (4 + 8, 0, 500.0), 196 + 12);
        // No idle time: tells nothing of the cost.
        thread(&mut pace, 2, (20, 0, 50_000.0), 1000);
        assert_eq!(pace.cost_per_call(None), None, "too few calls yet");
        pace.inside.get_mut(&1).unwrap().calls = 2000.0;
        let cost = pace.cost_per_call(None).unwrap().as_nanos();
        assert!((3990..=4010).contains(&cost), "{cost} ns");
        assert_eq!(
            pace.cost_per_call(Some(1)),
            None,
            "not from the thread itself"
        );
        // A thread whose CPU time did not rise inside windows shows nothing.
        thread(&mut pace, 1, (4, 0, 2000.0), 200);
        assert_eq!(pace.cost_per_call(None), None);
    }

    #[test]
    fn calls_count_for_the_threads_followed_through_their_window() {
        let mut pace = Pace::default();
        let me = std::process::id();
        let tid = u32::try_from(nix::unistd::gettid().as_raw()).unwrap();
        pace.opened(me, &[tid], 0);
        pace.closed(me, 20_000_000);
        pace.count_calls(&HashMap::from([(tid, 10), (tid + 1, 5)]), 1.5);
        assert_eq!(pace.inside[&tid].calls, 15.0);
        assert!(!pace.inside.contains_key(&(tid + 1)), "not followed");
    }

    #[test]
    fn this_threads_schedstat_is_read() {
        let pid = std::process::id();
        let tid = u32::try_from(nix::unistd::gettid().as_raw()).unwrap();
        let before = sched(pid, tid).expect("schedstat");
        // Spins until the counter moves on (bounded: a loaded machine gives us less CPU).
        let start = std::time::Instant::now();
        let mut after = before;
        while after.cpu < before.cpu + 10_000_000 && start.elapsed().as_secs() < 20 {
            std::hint::black_box(0u64);
            after = sched(pid, tid).unwrap();
        }
        assert!(
            after.cpu >= before.cpu + 10_000_000,
            "{before:?} → {after:?}"
        );
        assert!(after.wait >= before.wait);
        assert_eq!(sched(pid, u32::MAX), None);
    }
}
