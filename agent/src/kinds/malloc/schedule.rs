//! When probe windows open and for how long. A probe traps on every call while its window is
//! open (~0.5 µs each here, ×25 on a malloc/free loop), so windows open at random moments (no
//! regular pattern of the target lines up with them) for a share of the time (the duty)
//! chosen so that the traps cost the target about [`COST_BUDGET`] of its time: a target that
//! allocates little is watched half the time, a malloc-heavy one [`MIN_DUTY`] of it (it then
//! runs ×25 slower inside windows: its loss is about the duty). Each window is long enough
//! for about [`HITS_PER_WINDOW`] allocations at the rate the previous windows saw; its length
//! and the gap before it are chosen before it opens, from earlier windows only: a window cut
//! short by what happens inside it would see bursts less than their share.

use std::time::Duration;

/// The share of the target's time the traps may take.
pub const COST_BUDGET: f64 = 0.01;
/// What one allocation costs the target inside a window: entry and return traps with a stack
/// copy, and its free's trap (design-notes §8).
const COST_PER_HIT: Duration = Duration::from_micros(3);
/// The share of time probes are open, at least and at most.
pub const MIN_DUTY: f64 = 0.015;
const MAX_DUTY: f64 = 0.5;
/// Allocations one window should catch: enough to be worth opening (opening and closing a
/// window costs the target ~10 ms here: the kernel puts the breakpoints in and takes them
/// out), few enough that their stack copies (16 KiB each) fit the rings while the unwinder
/// catches up. A target allocating faster than [`FAST_RATE`] gets shorter windows.
const HITS_PER_WINDOW: f64 = 2000.0;
const FAST_RATE: f64 = 10_000.0;
const HITS_PER_FAST_WINDOW: f64 = 400.0;
const MIN_WINDOW: Duration = Duration::from_millis(1);
const MAX_WINDOW: Duration = Duration::from_millis(500);
/// At most 4 windows a second: opening and closing one costs the target ~5 ms here.
const MIN_GAP: Duration = Duration::from_millis(250);

pub struct Schedule {
    /// Hits per second of open window, smoothed over the windows so far (`None` before any).
    rate: Option<f64>,
    random: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::new()
    }
}

impl Schedule {
    pub fn new() -> Schedule {
        let seed = u64::from(std::process::id()) << 32 ^ crate::sampler::monotonic_ns();
        Schedule {
            rate: None,
            random: seed | 1,
        }
    }

    /// A window of `open` caught `hits` allocations; the kernel dropped `lost` records of it
    /// (rings full): the calls those were count too, or the next windows would grow.
    pub fn observed(&mut self, hits: u64, lost: u64, open: Duration) {
        // Each call writes about three records: entry, return, free.
        let hits = hits.saturating_add(lost / 3);
        let seconds = open.as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let rate = hits as f64 / seconds;
        self.rate = Some(match self.rate {
            Some(previous) => 0.7 * previous + 0.3 * rate,
            None => rate,
        });
    }

    /// How long the next window stays open.
    pub fn window(&self) -> Duration {
        match self.rate {
            Some(rate) if rate > 0.0 => {
                let hits = if rate > FAST_RATE {
                    HITS_PER_FAST_WINDOW
                } else {
                    HITS_PER_WINDOW
                };
                Duration::from_secs_f64((hits / rate).min(MAX_WINDOW.as_secs_f64())).max(MIN_WINDOW)
            }
            // Nothing seen yet: start short, in case the target allocates a lot.
            Some(_) => MAX_WINDOW,
            None => MIN_WINDOW,
        }
    }

    /// The share of time to keep probes open.
    pub fn duty(&self) -> f64 {
        match self.rate {
            Some(rate) => {
                let cost_when_open = rate * COST_PER_HIT.as_secs_f64();
                (COST_BUDGET / cost_when_open.max(1e-9)).clamp(MIN_DUTY, MAX_DUTY)
            }
            None => MIN_DUTY,
        }
    }

    /// How long to wait, from a window's close, before the next `window` opens: uniform in
    /// [½, 1½] of the gap that keeps the duty.
    pub fn gap(&mut self, window: Duration) -> Duration {
        let mean = window
            .div_f64(self.duty())
            .saturating_sub(window)
            .max(MIN_GAP);
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

    #[test]
    fn windows_shrink_for_busy_allocators_and_keep_the_duty() {
        let mut schedule = Schedule::new();
        assert_eq!(schedule.window(), MIN_WINDOW, "cautious at first");
        schedule.observed(10, 0, Duration::from_millis(2));
        assert_eq!(
            schedule.window(),
            Duration::from_millis(400),
            "5000/s: a long window"
        );
        let mut lossy = Schedule::new();
        lossy.observed(10, 3000, Duration::from_millis(2));
        assert!(
            lossy.window() < Duration::from_millis(2),
            "lost records count as calls"
        );
        for _ in 0..20 {
            schedule.observed(4000, 0, Duration::from_millis(2));
        }
        assert_eq!(schedule.window(), MIN_WINDOW, "2 M/s: the shortest");
        assert_eq!(schedule.duty(), MIN_DUTY, "2 M/s: the least duty");
        let window = Duration::from_millis(20);
        let gaps: Vec<Duration> = (0..400).map(|_| schedule.gap(window)).collect();
        let mean = gaps.iter().sum::<Duration>() / 400;
        let duty = window.as_secs_f64() / (window + mean).as_secs_f64();
        assert!(
            (0.8 * MIN_DUTY..1.2 * MIN_DUTY).contains(&duty),
            "duty {duty}"
        );
        assert!(gaps.iter().any(|g| *g < mean) && gaps.iter().any(|g| *g > mean));
        // 1000 allocations a second cost 0.3 % even if watched all the time.
        let mut light = Schedule::new();
        light.observed(10, 0, Duration::from_millis(10));
        assert_eq!(light.duty(), MAX_DUTY);
    }
}
