//! Whether the probes set a thread's pace, and by how much. Inside a window every allocation
//! traps ([`COST_PER_HIT`] with its free, against tens of nanoseconds without): a thread busy
//! on the CPU then does less of its own work inside windows than outside, so the share of time
//! windows were open overstates the share of its allocations they saw. Such a thread is
//! recognised by its CPU time inside windows (schedstat, in nanoseconds): busy nearly all the
//! window long. A thread that keeps its pace (it still has idle time inside windows) does the
//! same work per second inside windows as outside, and the time share is the right measure
//! for it. A busy thread that gets the CPU as often inside windows as outside (on a loaded
//! machine, less than all the time) is paced too: it would have done more work with the CPU
//! it had.
//!
//! How much: a paced thread's own work inside windows is its CPU time there less its traps'
//! (allocations seen × [`COST_PER_HIT`]). Its rate of own work inside windows over its rate
//! outside ([`Pace::own_shares`]) is the share of its usual work windows saw per second open:
//! its figures are scaled by its inverse. Where traps took over half of its window time (an
//! allocator running flat out: ×25–×500 slower inside windows), that correction would rest on
//! the modelled trap cost more than on what was measured: its figures are left uncorrected and
//! called lower bounds.

use std::collections::{HashMap, HashSet};

use super::schedule::COST_PER_HIT;

/// Threads followed per window at most (two /proc reads each per window).
const MAX_THREADS: usize = 256;
/// A thread is paced by the probes if it is on the CPU inside windows at least this share of
/// the time it is outside them, and outside them at least [`BUSY`] of the time.
const SATURATED: f64 = 0.9;
const BUSY: f64 = 0.25;
/// Window time a thread must have been seen in before it is judged.
const MIN_OBSERVED_NS: u64 = 10_000_000;
/// A paced thread whose own work kept less than this share of its rate inside windows has
/// figures too uncertain to correct (see the module's comment).
pub const MIN_OWN_SHARE: f64 = 0.5;

/// (CLOCK_MONOTONIC ns, the thread's CPU ns then).
type Reading = (u64, u64);

/// CPU time of the target's threads inside windows.
#[derive(Debug, Default)]
pub struct Pace {
    /// Per thread: CPU ns inside windows, window ns.
    inside: HashMap<u32, (u64, u64)>,
    /// Per thread: (time, CPU ns) when first and last read.
    span: HashMap<u32, (Reading, Reading)>,
    /// The open window's threads with their CPU ns at its opening, and when it opened.
    open: Vec<(u32, u64)>,
    opened_at: u64,
}

impl Pace {
    /// A window opened at `at` (CLOCK_MONOTONIC ns) on `tids` of process `pid`.
    pub fn opened(&mut self, pid: u32, tids: &[u32], at: u64) {
        self.opened_at = at;
        self.open = tids
            .iter()
            .take(MAX_THREADS)
            .filter_map(|&tid| Some((tid, cpu_ns(pid, tid)?)))
            .collect();
        for &(tid, cpu) in &self.open {
            self.span.entry(tid).or_insert(((at, cpu), (at, cpu))).1 = (at, cpu);
        }
    }

    /// The window closed at `at`.
    pub fn closed(&mut self, pid: u32, at: u64) {
        let window = at.saturating_sub(self.opened_at);
        for (tid, before) in std::mem::take(&mut self.open) {
            let Some(after) = cpu_ns(pid, tid) else {
                continue;
            };
            let entry = self.inside.entry(tid).or_default();
            entry.0 = entry.0.saturating_add(after.saturating_sub(before));
            entry.1 = entry.1.saturating_add(window);
            if let Some(span) = self.span.get_mut(&tid) {
                span.1 = (at, after);
            }
        }
    }

    /// The threads the probes set the pace of.
    pub fn saturated(&self) -> HashSet<u32> {
        self.inside
            .keys()
            .copied()
            .filter(|&tid| {
                self.shares(tid).is_some_and(|(inside, outside)| {
                    outside >= BUSY && inside >= SATURATED * outside
                })
            })
            .collect()
    }

    /// Per paced thread, with `seen(tid)` its allocations seen in windows: the rate of its own
    /// work inside windows over its rate outside, at most 1.
    pub fn own_shares(&self, seen: impl Fn(u32) -> u64) -> HashMap<u32, f64> {
        self.saturated()
            .into_iter()
            .filter_map(|tid| {
                let &(cpu_in, window) = self.inside.get(&tid)?;
                let (_, outside) = self.shares(tid)?;
                let traps = seen(tid) as f64 * COST_PER_HIT.as_secs_f64() * 1e9;
                let own_inside = (cpu_in as f64 - traps).max(0.0) / window as f64;
                Some((tid, (own_inside / outside).min(1.0)))
            })
            .collect()
    }

    /// A thread's share of time on the CPU inside windows and outside them, once it was seen
    /// long enough in both.
    fn shares(&self, tid: u32) -> Option<(f64, f64)> {
        let &(cpu_in, window) = self.inside.get(&tid)?;
        let &((t0, c0), (t1, c1)) = self.span.get(&tid)?;
        let time_out = t1.saturating_sub(t0).saturating_sub(window);
        let cpu_out = c1.saturating_sub(c0).saturating_sub(cpu_in);
        if window < MIN_OBSERVED_NS || time_out < MIN_OBSERVED_NS {
            return None;
        }
        Some((
            cpu_in as f64 / window as f64,
            cpu_out as f64 / time_out as f64,
        ))
    }
}

/// Thread `tid`'s CPU time so far, from `/proc/PID/task/TID/schedstat` (its first field).
fn cpu_ns(pid: u32, tid: u32) -> Option<u64> {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text =
        rprof_symbolizer::proc_dir::read_text_lossy(std::path::Path::new(&path), 128).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_busy_through_its_windows_is_paced_by_the_probes() {
        let mut pace = Pace::default();
        // 1 s each; 20 ms of it inside windows.
        let second = 1_000_000_000;
        for (tid, cpu_in, cpu_total) in [
            (1, 19_000_000, 990_000_000), // flat out
            (2, 9_000_000, 450_000_000),  // flat out on a loaded machine: half a CPU
            (3, 2_000_000, 30_000_000),   // keeps its pace: idle inside windows too
            (4, 15_000_000, 100_000_000), // busier inside windows, idle outside
        ] {
            pace.inside.insert(tid, (cpu_in, 20_000_000));
            pace.span.insert(tid, ((0, 0), (second, cpu_total)));
        }
        pace.inside.insert(5, (1_000_000, 1_000_000));
        pace.span.insert(5, ((0, 0), (second, second)));
        assert_eq!(
            pace.saturated(),
            HashSet::from([1, 2]),
            "5: seen too briefly"
        );
        // Thread 1 was seen allocating 140 times in its 20 ms of windows: 0.98 ms of traps, so
        // its own work ran at 90 % of its rate outside windows. Thread 2's 2 000: traps took
        // all of its window time.
        let shares = pace.own_shares(|tid| if tid == 1 { 140 } else { 2000 });
        assert_eq!(shares.len(), 2);
        let own = (19.0 - 0.98) / 20.0 / (971.0 / 980.0);
        assert!((shares[&1] - own).abs() < 1e-6, "{shares:?}");
        assert_eq!(shares[&2], 0.0);
    }

    #[test]
    fn a_busy_thread_that_keeps_its_pace_keeps_its_whole_rate() {
        // Half a CPU outside windows; inside, the same half plus 3 ms of traps (1 000 seen),
        // so it looks saturated by its CPU time, but its own work kept its pace.
        let mut pace = Pace::default();
        pace.inside.insert(7, (10_000_000 + 7_000_000, 20_000_000));
        pace.span
            .insert(7, ((0, 0), (1_000_000_000, 500_000_000 + 7_000_000)));
        assert!(pace.saturated().contains(&7));
        let shares = pace.own_shares(|_| 1000);
        assert!((shares[&7] - 1.0).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn this_threads_cpu_time_is_read() {
        let pid = std::process::id();
        let tid = u32::try_from(nix::unistd::gettid().as_raw()).unwrap();
        let before = cpu_ns(pid, tid).expect("schedstat");
        // Spins until the counter moves on (bounded: a loaded machine gives us less CPU).
        let start = std::time::Instant::now();
        let mut after = before;
        while after < before + 10_000_000 && start.elapsed().as_secs() < 20 {
            std::hint::black_box(0u64);
            after = cpu_ns(pid, tid).unwrap();
        }
        assert!(after >= before + 10_000_000, "{before} → {after}");
        assert_eq!(cpu_ns(pid, u32::MAX), None);
    }
}
