//! What every profile `record` takes has in common: drained while the window lasts, stopped,
//! then built.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use rprof_proto::Profile;

use crate::sampler::{Record, Sampler};

/// How often new threads are looked for (threads created by sampled threads are inherited by
/// the kernel; this catches the rest).
const THREAD_RESCAN_INTERVAL: Duration = Duration::from_millis(500);

/// One profile being recorded.
pub trait Recording: Send {
    /// What drives it, for the progress line (e.g. "cpu-clock").
    fn label(&self) -> String;

    /// Waits up to `timeout` for records and hands them to the unwinder.
    fn pump(&mut self, timeout: Duration);

    /// What it has gathered so far, for the progress line.
    fn figures(&self) -> String;

    /// Hands the last records to the unwinder and stops sampling.
    fn stop(&mut self);

    /// Waits for the unwinder, then builds the symbolized profile.
    fn finish(self: Box<Self>, window: &Window) -> Result<Finished>;
}

/// A recorded profile and what to say about it.
pub struct Finished {
    pub profile: Profile,
    /// The summary line, after "wrote FILE: ".
    pub summary: String,
    /// A title for a flamegraph of it.
    pub title: String,
    /// Whether it holds anything to rank in a top table.
    pub has_samples: bool,
}

/// The recording window all profiles of one `record` share.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub pid: u32,
    pub start: SystemTime,
    pub duration: Duration,
    pub outcome: Outcome,
}

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Elapsed,
    Interrupted,
    TargetExited,
}

impl Outcome {
    /// What the summary line says about it.
    pub fn note(self) -> &'static str {
        match self {
            Outcome::Elapsed => "",
            Outcome::Interrupted => " (stopped early)",
            Outcome::TargetExited => " (target exited)",
        }
    }
}

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

    /// Waits up to `timeout` for records, hands each to `forward` in time order, and now and
    /// then attaches threads that are not sampled yet.
    pub fn pump(&mut self, timeout: Duration, forward: &mut dyn FnMut(Record<'_>)) {
        if let Err(err) = self.sampler.wait(timeout) {
            tracing::debug!("wait for samples: {err}");
            std::thread::sleep(timeout);
        }
        self.sampler.drain(forward);
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

/// `part` in percent of `whole` (0 for an empty whole).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
