//! `/debug/pprof/cmdline`: the target's command line, arguments separated by NUL bytes as Go
//! joins `os.Args` (no trailing NUL).

use std::io::Read;

use axum::extract::State;
use axum::response::Response;

use super::errors::PprofError;
use super::responses;
use super::state::SharedState;

/// A command line is at most a few hundred KiB (ARG_MAX); read no more than this.
const MAX_CMDLINE: u64 = 1 << 20;

pub async fn cmdline(State(state): State<SharedState>) -> Result<Response, PprofError> {
    let target = state.target.current()?;
    let mut bytes = Vec::new();
    // /proc/PID/cmdline is kernel memory, not a disk: fine on an async worker.
    std::fs::File::open(format!("/proc/{}/cmdline", target.pid))
        .and_then(|file| file.take(MAX_CMDLINE).read_to_end(&mut bytes))
        .map_err(|err| {
            PprofError::internal(format!("cannot read /proc/{}/cmdline: {err}", target.pid))
        })?;
    if bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(responses::text(bytes))
}
