//! When probe windows open and for how long. A probe traps on every call while its window is
//! open, so windows open at random moments (no regular pattern of the target lines up with
//! them), about once a [`PERIOD`], and stay open for a share of the time (the duty) chosen so
//! that what they cost the target stays within [`COST_BUDGET`] of its time. Two costs, both
//! measured on these VMs by `scripts/bench-malloc`: each allocation seen ([`COST_PER_HIT`],
//! with its free), and each window ([`COST_PER_WINDOW`]: the kernel writes the breakpoints
//! into the target's pages as it opens and takes them out as it closes). A target that
//! allocates little is watched half the time; a malloc-heavy one in short windows (it runs
//! many times slower inside them, so it pays about the duty). Each window's length and the
//! gap before it are chosen before it opens, from earlier windows only: a window cut short by
//! what happens inside it would see bursts less than their share.

use std::time::Duration;

/// The share of the target's time the probes may cost it.
pub const COST_BUDGET: f64 = 0.01;
/// What one allocation costs the target inside a window: its entry trap with a 16 KiB stack
/// copy, its return trap, and its free's trap. `scripts/bench-malloc` measured 6.8 µs on
/// these VMs (the typical target, windows open half the time); design-notes §8 has the parts.
pub const COST_PER_HIT: Duration = Duration::from_micros(7);
/// What opening and closing one window costs the target: 4 nearly empty windows a second
/// cost the typical target 0.9 % (`scripts/bench-malloc`, 2026-12-06).
const COST_PER_WINDOW: Duration = Duration::from_micros(2500);
/// The mean time from a window's opening to the next one's: the window costs are then a
/// quarter of the budget.
const PERIOD: Duration = Duration::from_secs(1);
/// The share of time probes are open at most.
const MAX_DUTY: f64 = 0.5;
/// Allocations one window may catch: few enough that their stack copies (16 KiB each) fit
/// the rings while the unwinder catches up. A target allocating faster than [`FAST_RATE`]
/// fills them faster, so its windows catch fewer.
const HITS_PER_WINDOW: f64 = 2000.0;
const FAST_RATE: f64 = 10_000.0;
const HITS_PER_FAST_WINDOW: f64 = 400.0;
const MIN_WINDOW: Duration = Duration::from_millis(1);

pub struct Schedule {
    /// Hits and seconds of open window so far, each earlier window's weighed down by
    /// [`FORGET`] per window since (`None` before any): the rate they give follows a target
    /// that changes, and a short window counts for its length only.
    seen: Option<(f64, f64)>,
    random: u64,
}

/// How much an earlier window still counts, per window since.
const FORGET: f64 = 0.7;

impl Default for Schedule {
    fn default() -> Self {
        Self::new()
    }
}

impl Schedule {
    pub fn new() -> Schedule {
        let seed = u64::from(std::process::id()) << 32 ^ crate::sampler::monotonic_ns();
        Schedule {
            seen: None,
            random: seed | 1,
        }
    }

    /// A window of `open` caught `hits` allocations; the kernel dropped `lost` records of it
    /// (rings full): the calls those were count too, or the next windows would grow.
    pub fn observed(&mut self, hits: u64, lost: u64, open: Duration) {
        // Each call writes about three records: entry, return, free.
        let hits = hits.saturating_add(lost / 3) as f64;
        let seconds = open.as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let (before_hits, before_seconds) = self.seen.unwrap_or_default();
        self.seen = Some((
            FORGET * before_hits + hits,
            FORGET * before_seconds + seconds,
        ));
    }

    /// Hits per second of open window (`None` before any window).
    fn rate(&self) -> Option<f64> {
        let (hits, seconds) = self.seen?;
        Some(hits / seconds.max(1e-9))
    }

    /// How long the next window stays open: its share of the [`PERIOD`], or as long as the
    /// rings allow.
    pub fn window(&self) -> Duration {
        let Some(rate) = self.rate() else {
            // Nothing seen yet: start short, in case the target allocates a lot.
            return MIN_WINDOW;
        };
        let mut seconds = self.duty() * PERIOD.as_secs_f64();
        if rate > 0.0 {
            let hits = if rate > FAST_RATE {
                HITS_PER_FAST_WINDOW
            } else {
                HITS_PER_WINDOW
            };
            seconds = seconds.min(hits / rate);
        }
        Duration::from_secs_f64(seconds).max(MIN_WINDOW)
    }

    /// The share of time to keep probes open: what the budget leaves once the windows'
    /// own cost is paid, over what the traps cost while they are open.
    pub fn duty(&self) -> f64 {
        let Some(rate) = self.rate() else {
            return 0.0;
        };
        let for_hits = COST_BUDGET - COST_PER_WINDOW.as_secs_f64() / PERIOD.as_secs_f64();
        let cost_when_open = rate * COST_PER_HIT.as_secs_f64();
        (for_hits / cost_when_open.max(1e-9)).clamp(0.0, MAX_DUTY)
    }

    /// How long to wait, from a window's close, before the next `window` opens: uniform in
    /// [½, 1½] of what is left of the [`PERIOD`].
    pub fn gap(&mut self, window: Duration) -> Duration {
        let mean = PERIOD.saturating_sub(window).max(PERIOD / 2);
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let fraction = (self.random >> 11) as f64 / (1u64 << 53) as f64;
        mean.mul_f64(0.5 + fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeing(rate: f64) -> Schedule {
        let mut schedule = Schedule::new();
        for _ in 0..30 {
            schedule.observed((rate / 10.0) as u64, 0, Duration::from_millis(100));
        }
        schedule
    }

    /// What a second of this schedule costs the target, by the model.
    fn cost(schedule: &Schedule, rate: f64) -> f64 {
        let open = schedule.window().as_secs_f64();
        (COST_PER_WINDOW.as_secs_f64() + open * rate * COST_PER_HIT.as_secs_f64())
            / PERIOD.as_secs_f64()
    }

    #[test]
    fn windows_keep_the_cost_within_the_budget() {
        let schedule = Schedule::new();
        assert_eq!(schedule.window(), MIN_WINDOW, "cautious at first");
        // 8 000 allocations a second (the typical bench target): ~13 % of the time.
        let typical = seeing(8000.0);
        let duty = typical.window().as_secs_f64() / PERIOD.as_secs_f64();
        assert!((0.12..0.15).contains(&duty), "duty {duty}");
        assert!(cost(&typical, 8000.0) <= COST_BUDGET * 1.001);
        // 150 000 a second (a flat-out allocator, slowed by its traps): the rings set the
        // length, and the cost stays under the budget.
        let busy = seeing(150_000.0);
        assert!(
            busy.window() < Duration::from_millis(3),
            "{:?}",
            busy.window()
        );
        assert!(cost(&busy, 150_000.0) <= COST_BUDGET);
        // A light allocator is watched half the time.
        let light = seeing(100.0);
        assert_eq!(light.window(), PERIOD.mul_f64(MAX_DUTY));
        // Nothing allocated in the first windows: long ones, to catch what comes.
        let idle = seeing(0.0);
        assert_eq!(idle.window(), PERIOD.mul_f64(MAX_DUTY));
        let mut lossy = Schedule::new();
        lossy.observed(10, 30_000, Duration::from_millis(2));
        // A first window too short to tell does not outweigh the next ones.
        let mut settling = Schedule::new();
        settling.observed(2, 0, Duration::from_millis(1));
        settling.observed(3700, 0, Duration::from_millis(480));
        let rate = settling.rate().unwrap();
        assert!((7000.0..8000.0).contains(&rate), "{rate}");
        assert!(
            lossy.window() <= Duration::from_millis(2),
            "lost records count as calls"
        );
    }

    #[test]
    fn gaps_are_random_around_the_rest_of_the_period() {
        let mut schedule = seeing(8000.0);
        let window = schedule.window();
        let gaps: Vec<Duration> = (0..400).map(|_| schedule.gap(window)).collect();
        let mean = gaps.iter().sum::<Duration>() / 400;
        let period = (window + mean).as_secs_f64();
        assert!((0.9..1.1).contains(&period), "period {period}");
        assert!(gaps.iter().any(|g| *g < mean / 2 + mean / 10));
        assert!(gaps.iter().any(|g| *g > mean + mean * 4 / 10));
    }
}
