//! One profile of a running process, returned rather than written: what the HTTP server serves.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use rprof_proto::Profile;
use rprof_symbolizer::Symbolizer;

use super::cpu::{CpuRecording, CpuSettings};
use super::recording::{Outcome, Recording, Window};
use super::threadcreate::ThreadcreateRecording;
use super::POLL_INTERVAL;
use crate::cli::ProfileKind;
use crate::sampler::DEFAULT_STACK_BYTES;

/// What to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSpec {
    pub kind: ProfileKind,
    pub pid: u32,
    /// How long to record.
    pub window: Duration,
    /// CPU samples per second per thread (CPU profile only).
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
    let mut recording: Box<dyn Recording> = match spec.kind {
        ProfileKind::Cpu => {
            let settings = CpuSettings {
                frequency: spec.frequency,
                stack_bytes: DEFAULT_STACK_BYTES,
                kernel: false,
            };
            Box::new(CpuRecording::open(settings, spec.pid, symbolizer)?)
        }
        ProfileKind::Threadcreate => Box::new(ThreadcreateRecording::open(
            spec.pid,
            None,
            DEFAULT_STACK_BYTES,
            symbolizer,
        )?),
    };
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
        recording.pump(POLL_INTERVAL);
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
