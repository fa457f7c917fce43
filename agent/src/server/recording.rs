//! Running a recording (CPU, threadcreate) for a request: one per kind at a time, on a blocking
//! thread, cut short when the server shuts down or the client leaves.

use std::sync::Arc;
use std::time::Duration;

use rprof_proto::Profile;

use super::cancel;
use super::errors::PprofError;
use super::limits::Recording;
use super::procs::access_problem;
use super::state::SharedState;
use crate::cli::ProfileKind;
use crate::record::capture::{capture, CaptureSpec};

/// Records the current target for `seconds` and returns the profile.
pub async fn record(
    state: &SharedState,
    kind: ProfileKind,
    seconds: u64,
) -> Result<Profile, PprofError> {
    let what = label(kind);
    let target = state.target.current()?;
    let Some(_running) = state.limits.try_record(limit(kind)) else {
        // Go's words, for Go's clients.
        return Err(PprofError::internal(format!(
            "Could not enable {what} profiling: {} profiling already in use",
            kind.name()
        )));
    };
    let (cancel, _abandon_if_dropped) = cancel::for_request(&state.shutdown);
    let spec = CaptureSpec {
        kind,
        pid: target.pid,
        window: Duration::from_secs(seconds),
        frequency: state.settings.frequency,
    };
    let symbolizer = Arc::clone(&state.symbolizer);
    let captured =
        tokio::task::spawn_blocking(move || capture(&spec, &symbolizer, &|| cancel.is_set()))
            .await?;
    captured.map_err(|err| {
        if target.is_alive() {
            tracing::warn!("{what} profile of PID {} failed: {err:#}", target.pid);
            // Without ptrace access the error is a consequence; the cause is worth saying.
            let cause = access_problem(target.pid).map_or_else(String::new, |p| format!(" ({p})"));
            PprofError::internal(format!("Could not enable {what} profiling: {err:#}{cause}"))
        } else {
            PprofError::unavailable(format!("the target (PID {}) exited", target.pid))
        }
    })
}

/// How Go names the profile in its messages ("CPU").
fn label(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Cpu => "CPU",
        ProfileKind::Threadcreate => "threadcreate",
    }
}

fn limit(kind: ProfileKind) -> Recording {
    match kind {
        ProfileKind::Cpu => Recording::Cpu,
        ProfileKind::Threadcreate => Recording::Threadcreate,
    }
}
