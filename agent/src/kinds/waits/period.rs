//! How many context switches one sample stands for. Every switch of a thread that waits now
//! and then is sampled; a target switching faster than the budget has 1 in N of its switches
//! sampled, N chosen from the switch records it writes anyway (one per switch) and re-drawn at
//! random around that value each time, so that no regular pattern of the target lines up with
//! a fixed stride. Each sample is weighted by the period in force: totals stay unbiased.

use std::time::{Duration, Instant};

/// Context-switch samples per second, all threads together, that the agent lets a target pay
/// for before it samples 1 in N: each costs the switching thread a stack copy.
pub const SAMPLE_BUDGET: u64 = 5_000;
/// How often the rate is measured and the period re-drawn.
const ADJUST_EVERY: Duration = Duration::from_millis(250);

/// The period in force and what decides the next one.
pub struct Period {
    current: u64,
    switches: u64,
    since: Instant,
    random: u64,
}

impl Default for Period {
    fn default() -> Self {
        Period {
            current: 1,
            switches: 0,
            since: Instant::now(),
            random: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl Period {
    /// The switches one sample stands for now.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Threads left the CPU `count` times (switch-out records, or waits the kernel timed).
    pub fn switched(&mut self, count: u64) {
        self.switches = self.switches.saturating_add(count);
    }

    /// Starts at the period `rate` switches per second (measured before sampling began)
    /// needs, so that the first interval is not sampled at 1 in 1; returns it.
    pub fn start_at(&mut self, rate: f64) -> u64 {
        self.current = stride(rate);
        self.since = Instant::now();
        self.switches = 0;
        self.current
    }

    /// The period to set now, if it is time for a new one and it differs.
    pub fn redraw(&mut self) -> Option<u64> {
        let elapsed = self.since.elapsed();
        if elapsed < ADJUST_EVERY {
            return None;
        }
        let rate = self.switches as f64 / elapsed.as_secs_f64();
        self.switches = 0;
        self.since = Instant::now();
        let stride = stride(rate);
        let next = if stride == 1 {
            1
        } else {
            // Uniform in [stride/2, 3·stride/2]: the same mean, no fixed stride.
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            stride / 2 + self.random % (stride + 1)
        }
        .max(1);
        (next != self.current).then(|| {
            self.current = next;
            next
        })
    }
}

/// The mean period that samples `rate` switches per second within the budget.
fn stride(rate: f64) -> u64 {
    (rate / SAMPLE_BUDGET as f64).ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_target_has_every_switch_sampled_a_fast_one_about_its_budget() {
        const { assert!(SAMPLE_BUDGET > 1000) };
        let mut period = Period {
            since: Instant::now() - ADJUST_EVERY,
            switches: 100,
            ..Period::default()
        };
        assert_eq!(period.redraw(), None, "stays 1");
        let mut strides = Vec::new();
        for _ in 0..200 {
            period.since = Instant::now() - Duration::from_secs(1);
            period.switches = 10 * SAMPLE_BUDGET;
            if let Some(stride) = period.redraw() {
                strides.push(stride);
            }
            assert!((5..=15).contains(&period.current()), "{}", period.current());
        }
        let mean = strides.iter().sum::<u64>() as f64 / strides.len() as f64;
        assert!((9.0..=11.0).contains(&mean), "mean stride {mean}");
    }
}
