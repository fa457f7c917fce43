//! When probe windows open and for how long. A probe traps on every call while its window is
//! open, so windows open at random moments (no regular pattern of the target lines up with
//! them) for a share of the time (the duty) chosen so that what they cost the target stays
//! within [`COST_BUDGET`] of its time. Two costs, both measured on these VMs by
//! `scripts/bench-malloc`: each allocation seen ([`COST_PER_HIT`] with its free, or what the
//! target's own threads show: `Pace::cost_per_hit`), and each window ([`COST_PER_WINDOW`]: the
//! kernel writes the breakpoints into the target's pages as it opens and takes them out as it
//! closes). A window lasts long enough for its allocations to cost 3 times its opening (so
//! that opening is worth it), but no longer than the rings hold; windows then come as often as
//! the budget pays for (2 a second at most with the default budget), and with probes open at most half the time. A
//! target that allocates little is watched half the time; a malloc-heavy one in short windows
//! (it runs many times slower inside them, so it pays about the duty). Each window's length
//! and the gap before it are chosen before it opens, from earlier windows only: a window cut
//! short by what happens inside it would see bursts less than their share.

use std::time::Duration;

/// The share of the target's time the probes may cost it, unless the user says otherwise
/// (`--max-overhead`). At 1 % the typical bench target
/// (8 000 allocations a second) lost 1.3 % per CPU-second, more than the model says (the
/// windows' own cost varies); at 0.5 % its loss is within the bench's noise.
pub const COST_BUDGET: f64 = 0.005;
/// What one allocation costs the target inside a window: its entry trap with a 16 KiB stack
/// copy, its return trap, and its free's trap. `scripts/bench-malloc` measured 6.8 µs on
/// these VMs (the typical target, windows open half the time); design-notes §8 has the parts.
/// The target's own threads may show a higher one (`Pace::cost_per_hit`: single-stepped
/// probes, a slower machine), which is then used.
pub const COST_PER_HIT: Duration = Duration::from_micros(7);
/// What opening and closing one window costs the target: 4 nearly empty windows a second
/// cost the typical target 0.9 % (`scripts/bench-malloc`, 2026-12-06).
const COST_PER_WINDOW: Duration = Duration::from_micros(2500);
/// A window's allocations should cost the target this many times what opening it does.
const HITS_COST_PER_WINDOW_COST: f64 = 3.0;
/// The mean time from a window's opening to the next one's, at least: at most 10 a second
/// (the default budget allows 2: [`COST_PER_WINDOW`] / [`COST_BUDGET`]).
const MIN_PERIOD: Duration = Duration::from_millis(100);
/// The share of time probes are open at most, and the longest window.
const MAX_DUTY: f64 = 0.5;
const MAX_WINDOW: Duration = Duration::from_millis(500);
/// Allocations one window may catch: few enough that their stack copies (16 KiB each) fit
/// the rings while the unwinder catches up. A target allocating faster than [`FAST_RATE`]
/// fills them faster, so its windows catch fewer.
const HITS_PER_WINDOW: f64 = 2000.0;
const FAST_RATE: f64 = 10_000.0;
const HITS_PER_FAST_WINDOW: f64 = 400.0;
const MIN_WINDOW: Duration = Duration::from_millis(1);
const MAX_GROWTH: u32 = 4;

pub struct Schedule {
    /// Hits and seconds of open window so far, each earlier window's weighed down by
    /// [`FORGET`] per window since (`None` before any): the rate they give follows a target
    /// that changes, and a short window counts for its length only.
    seen: Option<(f64, f64)>,
    /// The last window's rate of hits, and how long it was open.
    last: Option<(f64, Duration)>,
    /// What an allocation costs the target inside a window.
    cost_per_hit: Duration,
    /// The share of the target's time the probes may cost it.
    budget: f64,
    random: u64,
}

/// How much an earlier window still counts, per window since.
const FORGET: f64 = 0.7;

impl Default for Schedule {
    fn default() -> Self {
        Self::new(COST_BUDGET)
    }
}

impl Schedule {
    /// A schedule whose probes cost the target about `budget` of its time.
    pub fn new(budget: f64) -> Schedule {
        let seed = u64::from(std::process::id()) << 32 ^ crate::sampler::monotonic_ns();
        Schedule {
            seen: None,
            last: None,
            cost_per_hit: COST_PER_HIT,
            budget,
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
        self.last = Some((hits / seconds, open));
        let (before_hits, before_seconds) = self.seen.unwrap_or_default();
        self.seen = Some((
            FORGET * before_hits + hits,
            FORGET * before_seconds + seconds,
        ));
    }

    /// What an allocation was measured to cost the target inside windows: at most what it
    /// costs (`Pace::cost_per_hit`), so it replaces the model's figure only if higher.
    pub fn calibrated(&mut self, cost_per_hit: Duration) {
        self.cost_per_hit = cost_per_hit.max(COST_PER_HIT);
    }

    /// Hits per second of open window (`None` before any window): the smoothed rate, or the
    /// last window's if higher (a target that starts allocating fast after long quiet windows
    /// gets short ones at once).
    fn rate(&self) -> Option<f64> {
        let (hits, seconds) = self.seen?;
        let last = self.last.map_or(0.0, |(rate, _)| rate);
        Some((hits / seconds.max(1e-9)).max(last))
    }

    /// How long the next window stays open.
    pub fn window(&self) -> Duration {
        self.plan().0
    }

    /// The share of time the probes are to be open.
    pub fn duty(&self) -> f64 {
        let (window, period) = self.plan();
        window.as_secs_f64() / period.as_secs_f64()
    }

    /// How long to wait, from a window's close, before the next `window` opens: uniform in
    /// [½, 1½] of what is left of the planned period.
    pub fn gap(&mut self, window: Duration) -> Duration {
        let (_, period) = self.plan();
        let mean = period.saturating_sub(window).max(MIN_PERIOD / 2);
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let fraction = (self.random >> 11) as f64 / (1u64 << 53) as f64;
        mean.mul_f64(0.5 + fraction)
    }

    /// The next window's length, and the mean time from its opening to the next one's.
    fn plan(&self) -> (Duration, Duration) {
        let Some(rate) = self.rate() else {
            // Nothing seen yet: start short, in case the target allocates a lot.
            return (MIN_WINDOW, MIN_PERIOD);
        };
        // What an open second costs the target, and how long the rings let a window be.
        let cost_when_open = rate * self.cost_per_hit.as_secs_f64();
        let hits = if rate > FAST_RATE {
            HITS_PER_FAST_WINDOW
        } else {
            HITS_PER_WINDOW
        };
        let longest = (hits / rate.max(1e-9)).min(MAX_WINDOW.as_secs_f64());
        let opening = COST_PER_WINDOW.as_secs_f64();
        // Windows grow at most 4 times from one to the next: a first short window that saw
        // nothing does not make the next one half a second long.
        let grown = self
            .last
            .map_or(MIN_WINDOW, |(_, open)| open.max(MIN_WINDOW) * MAX_GROWTH);
        let window = (HITS_COST_PER_WINDOW_COST * opening / cost_when_open.max(1e-9))
            .min(longest)
            .min(grown.as_secs_f64())
            .max(MIN_WINDOW.as_secs_f64());
        // As often as the budget pays for the window and its allocations.
        let period = ((opening + window * cost_when_open) / self.budget.max(1e-6))
            .max(window / MAX_DUTY)
            .max(MIN_PERIOD.as_secs_f64());
        (
            Duration::from_secs_f64(window),
            Duration::from_secs_f64(period),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeing(rate: f64) -> Schedule {
        let mut schedule = Schedule::default();
        for _ in 0..30 {
            schedule.observed((rate / 2.0) as u64, 0, MAX_WINDOW);
        }
        schedule
    }

    /// What a second of this schedule costs the target, by the model.
    fn cost(schedule: &Schedule, rate: f64) -> f64 {
        let (window, period) = schedule.plan();
        (COST_PER_WINDOW.as_secs_f64() + window.as_secs_f64() * rate * COST_PER_HIT.as_secs_f64())
            / period.as_secs_f64()
    }

    #[test]
    fn windows_keep_the_cost_within_the_budget() {
        let schedule = Schedule::default();
        assert_eq!(schedule.window(), MIN_WINDOW, "cautious at first");
        // 8 000 allocations a second (the typical bench target): ~7 % of the time, in
        // windows of ~130 ms, one every 2 s.
        let typical = seeing(8000.0);
        let duty = typical.duty();
        assert!((0.06..0.075).contains(&duty), "duty {duty}");
        assert!((cost(&typical, 8000.0) - COST_BUDGET).abs() < 1e-4);
        // 25 000 a second: the rings set the length (400 allocations); windows come more
        // often to spend the budget.
        let brisk = seeing(25_000.0);
        assert_eq!(brisk.window(), Duration::from_millis(16));
        assert!((cost(&brisk, 25_000.0) - COST_BUDGET).abs() < 1e-4);
        assert!((0.01..0.02).contains(&brisk.duty()), "{}", brisk.duty());
        // 150 000 a second (a flat-out allocator, slowed by its traps): short windows, as
        // many as the budget pays for.
        let busy = seeing(150_000.0);
        assert!(
            busy.window() < Duration::from_millis(3),
            "{:?}",
            busy.window()
        );
        assert!(cost(&busy, 150_000.0) <= COST_BUDGET * 1.0001);
        // A light allocator is watched half the time.
        let light = seeing(100.0);
        assert_eq!(light.window(), MAX_WINDOW);
        assert_eq!(light.duty(), MAX_DUTY);
        // Nothing allocated in the first windows: long ones, to catch what comes, but not at
        // once.
        let mut idle = Schedule::default();
        idle.observed(0, 0, MIN_WINDOW);
        assert_eq!(idle.window(), MIN_WINDOW * MAX_GROWTH);
        let idle = seeing(0.0);
        assert_eq!(idle.window(), MAX_WINDOW);
        // A target that starts allocating fast after quiet windows gets short windows at once.
        let mut waking = seeing(0.0);
        waking.observed(7500, 0, Duration::from_millis(50));
        assert!(
            waking.window() <= Duration::from_millis(3),
            "{:?}",
            waking.window()
        );
        let mut lossy = Schedule::default();
        lossy.observed(10, 30_000, Duration::from_millis(2));
        assert!(
            lossy.window() <= Duration::from_millis(2),
            "lost records count as calls"
        );
        // A first window too short to tell does not outweigh the next ones.
        let mut settling = Schedule::default();
        settling.observed(2, 0, Duration::from_millis(1));
        settling.observed(3700, 0, Duration::from_millis(480));
        let rate = settling.rate().unwrap();
        assert!((7000.0..8000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn a_larger_budget_opens_windows_more_often() {
        let mut generous = Schedule::new(0.04);
        for _ in 0..30 {
            generous.observed(12_500, 0, MAX_WINDOW);
        }
        let default = seeing(25_000.0);
        assert_eq!(
            generous.window(),
            default.window(),
            "the rings set the length"
        );
        assert!(
            generous.duty() > 6.0 * default.duty(),
            "{}",
            generous.duty()
        );
        let (window, period) = generous.plan();
        let cost = (COST_PER_WINDOW.as_secs_f64()
            + window.as_secs_f64() * 25_000.0 * COST_PER_HIT.as_secs_f64())
            / period.as_secs_f64();
        assert!((cost - 0.04).abs() < 1e-3, "{cost}");
    }

    #[test]
    fn a_higher_measured_cost_replaces_the_model() {
        let mut schedule = seeing(8000.0);
        let modelled = schedule.duty();
        schedule.calibrated(COST_PER_HIT / 2);
        assert_eq!(schedule.duty(), modelled, "a measure is at most the cost");
        schedule.calibrated(COST_PER_HIT * 2);
        assert!(
            schedule.duty() < 0.6 * modelled,
            "{} {modelled}",
            schedule.duty()
        );
    }

    #[test]
    fn gaps_are_random_around_the_rest_of_the_period() {
        let mut schedule = seeing(8000.0);
        let window = schedule.window();
        let gaps: Vec<Duration> = (0..400).map(|_| schedule.gap(window)).collect();
        let mean = gaps.iter().sum::<Duration>() / 400;
        let period = (window + mean).as_secs_f64();
        let planned = schedule.plan().1.as_secs_f64();
        assert!(
            (0.9 * planned..1.1 * planned).contains(&period),
            "period {period}, planned {planned}"
        );
        assert!(gaps.iter().any(|g| *g < mean / 2 + mean / 10));
        assert!(gaps.iter().any(|g| *g > mean + mean * 4 / 10));
    }
}
