//! Running a recording of any recorded kind for a request: one per kind at a time, on a
//! blocking thread, cut short when the server shuts down or the client leaves.

use std::sync::Arc;
use std::time::Duration;

use rprof_proto::Profile;

use super::cancel;
use super::errors::PprofError;
use super::procs::{access_problem, Incarnation};
use super::state::SharedState;
use crate::kinds::Kind;
use crate::recording::capture::{capture, CaptureSpec};

/// A finished recording.
pub struct Recorded {
    pub pid: u32,
    pub profile: Profile,
}

/// Records the current target for `seconds` and returns the profile.
pub async fn record(
    state: &SharedState,
    kind: &'static Kind,
    seconds: u64,
) -> Result<Recorded, PprofError> {
    let what = kind.go_name;
    let target = state.target.current()?;
    let Some(running) = state.limits.try_record(kind) else {
        // Go's words, for Go's clients.
        return Err(PprofError::internal(format!(
            "Could not enable {what} profiling: {} profiling already in use",
            kind.name
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
    let captured = tokio::task::spawn_blocking(move || {
        // Held until the recording really ends, even if the request is dropped before: one
        // recording per kind means one perf session, not one waiting request.
        let _running = running;
        let captured = capture(&spec, &symbolizer, &|| cancel.is_set());
        symbolizer.release_pages();
        captured
    })
    .await?;
    let profile = captured.map_err(|err| failure(what, target, &err))?;
    Ok(Recorded {
        pid: target.pid,
        profile,
    })
}

/// Why a recording failed, for the client: Go's "Could not enable" message, or 503 if the
/// target is gone.
fn failure(what: &str, target: Incarnation, err: &anyhow::Error) -> PprofError {
    if !target.is_alive() {
        return PprofError::unavailable(format!("the target (PID {}) exited", target.pid));
    }
    tracing::warn!("{what} profile of PID {} failed: {err:#}", target.pid);
    // Without ptrace access the error is a consequence; the cause is worth saying.
    let cause = access_problem(target.pid).map_or_else(String::new, |p| format!(" ({p})"));
    PprofError::internal(format!("Could not enable {what} profiling: {err:#}{cause}"))
}
