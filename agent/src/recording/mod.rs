//! What every recorded profile kind has in common: a window during which a trigger (perf events)
//! is drained, stacks unwound on a thread of their own and aggregated; then the profile is built.
//!
//! A kind (see [`crate::kinds`]) opens a [`Recording`] from a [`Request`]; the verbs (`record`,
//! `serve` through [`capture`]) drive it without knowing which kind it is.

mod aggregate;
pub mod capture;
mod pipeline;
mod pump;
mod window;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rprof_proto::Profile;
use rprof_symbolizer::Symbolizer;

pub use aggregate::{Aggregate, Unwound};
pub use pipeline::{Counters, Event, Pipeline};
pub use pump::Pump;
pub use window::{Outcome, Window};

/// How long one wait for ring-buffer data may block. The kernel wakes the drain each time half
/// a ring's worth of records has been written; this picks up what a quiet target left in its
/// rings, and bounds how late a stop asked from another thread (`serve`'s shutdown, the other
/// kinds of one `record`) is noticed. Each wait is a context switch of the agent (two when it
/// hands samples to the unwinder), on a core the target may need: shorter, it would expire
/// between the kernel's wakeups of a busy target at 100 Hz (half of an 8 MiB ring every ~0.6 s)
/// and add its own. Ctrl-C interrupts the wait (the signal lands on the main thread, which
/// drains), the window's end is waited for exactly, and the target's exit ends the wait (its
/// pidfd is polled with the rings).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long the next wait of a window that ends in `left` may block.
pub fn next_wait(left: Duration) -> Duration {
    POLL_INTERVAL.min(left).max(Duration::from_millis(1))
}

/// What a kind needs to start recording.
pub struct Request<'a> {
    pub pid: u32,
    /// For a launched command (`record -- CMD`), the program it is about to exec: its files
    /// are not mapped yet.
    pub program: Option<&'a str>,
    /// Samples per second per thread on CPU, for kinds that sample CPU time.
    pub frequency: u64,
    /// User stack bytes copied per sample.
    pub stack_bytes: u32,
    /// Also record kernel frames.
    pub kernel: bool,
    /// Trace every call instead of sampling (kinds that probe calls: allocs, heap).
    pub exact: bool,
    /// The share of the target's time sampled probes may cost it (allocs, heap), if not the
    /// kind's own default.
    pub max_overhead: Option<f64>,
    /// One cache of parsed binaries, shared by every profile of the process.
    pub symbolizer: &'a Arc<Symbolizer>,
}

/// One profile being recorded.
pub trait Recording: Send {
    /// What drives it, for the progress line (e.g. "cpu-clock").
    fn label(&self) -> String;

    /// Waits up to `timeout` for records and hands them to the unwinder.
    fn pump(&mut self, timeout: Duration);

    /// What it has gathered so far, for the progress line.
    fn figures(&self) -> String;

    /// Hands the last records to the unwinder and stops sampling. A second call does nothing
    /// (`record` stops the recordings of a process that exits early, then every one).
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

/// The first comment of every recorded profile: who recorded what.
pub fn provenance(window: &Window) -> String {
    format!(
        "rprof-agent {} record, PID {}",
        env!("CARGO_PKG_VERSION"),
        window.pid
    )
}

/// `part` in percent of `whole` (0 for an empty whole).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
