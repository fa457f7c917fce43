//! One profile of a running process, returned rather than written: what the HTTP server serves.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use rprof_proto::Profile;
use rprof_symbolizer::Symbolizer;

use super::{next_wait, Outcome, Request, Window};
use crate::kinds::Kind;
use crate::sampler::DEFAULT_STACK_BYTES;

/// What to capture.
#[derive(Debug, Clone, Copy)]
pub struct CaptureSpec {
    pub kind: &'static Kind,
    pub pid: u32,
    /// How long to record.
    pub window: Duration,
    /// CPU samples per second per thread (kinds that sample CPU time).
    pub frequency: u64,
}

/// Records `spec.pid` for `spec.window` (less if `stop` turns true or the process exits) and
/// returns the symbolized profile. Stacks are copied whole; kernel frames are left out.
pub fn capture(
    spec: &CaptureSpec,
    symbolizer: &Arc<Symbolizer>,
    stop: &dyn Fn() -> bool,
) -> Result<Profile> {
    // The process itself, not its PID: a PID reused mid-capture ends the capture.
    let target = crate::process_identity::ProcessHandle::open(spec.pid);
    let request = Request {
        pid: spec.pid,
        program: None,
        frequency: spec.frequency,
        stack_bytes: DEFAULT_STACK_BYTES,
        kernel: false,
        exact: false,
        max_overhead: None,
        symbolizer,
    };
    let mut recording = spec.kind.open(&request)?;
    let start = SystemTime::now();
    let clock = Instant::now();
    let outcome = loop {
        if stop() {
            break Outcome::Interrupted;
        }
        if clock.elapsed() >= spec.window {
            break Outcome::Elapsed;
        }
        if !target.as_ref().is_some_and(|target| target.is_alive()) {
            break Outcome::TargetExited;
        }
        recording.pump(next_wait(spec.window.saturating_sub(clock.elapsed())));
    };
    let window = Window {
        pid: spec.pid,
        start,
        duration: clock.elapsed(),
        outcome,
    };
    recording.stop();
    Ok(recording.finish(&window)?.profile)
}
