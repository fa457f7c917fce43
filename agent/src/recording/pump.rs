//! Draining a sampler while the window lasts.

use std::time::{Duration, Instant};

use crate::sampler::{Record, Sampler};

/// How often new threads are looked for (threads created by sampled threads are inherited by
/// the kernel; this catches the rest).
const THREAD_RESCAN_INTERVAL: Duration = Duration::from_millis(500);

/// A sampler and the time of its last thread rescan.
pub struct Pump {
    sampler: Sampler,
    last_rescan: Instant,
}

impl Pump {
    pub fn new(sampler: Sampler) -> Self {
        Pump {
            sampler,
            last_rescan: Instant::now(),
        }
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    pub fn sampler_mut(&mut self) -> &mut Sampler {
        &mut self.sampler
    }

    /// Waits up to `timeout` for records, hands each to `forward` in time order, and now and
    /// then attaches threads that are not sampled yet.
    pub fn pump(&mut self, timeout: Duration, forward: &mut dyn FnMut(Record<'_>)) {
        self.pump_while(timeout, &mut || true, forward);
    }

    /// [`Pump::pump`], the drain stopping as soon as `go_on` says so (what is left is read
    /// next time).
    pub fn pump_while(
        &mut self,
        timeout: Duration,
        go_on: &mut dyn FnMut() -> bool,
        forward: &mut dyn FnMut(Record<'_>),
    ) {
        if let Err(err) = self.sampler.wait(timeout) {
            tracing::debug!("wait for samples: {err}");
            std::thread::sleep(timeout);
        }
        self.sampler.drain_while(go_on, forward);
        if self.last_rescan.elapsed() >= THREAD_RESCAN_INTERVAL {
            self.last_rescan = Instant::now();
            if let Err(err) = self.sampler.refresh_threads() {
                tracing::debug!("thread rescan: {err}");
            }
        }
    }

    /// Hands every record left to `forward`.
    pub fn drain(&mut self, forward: &mut dyn FnMut(Record<'_>)) {
        self.sampler.drain(forward);
    }
}
