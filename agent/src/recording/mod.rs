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

/// How long one wait for ring-buffer data may block: bounds how late we notice Ctrl-C, the end
/// of the window, or the target's exit.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

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
