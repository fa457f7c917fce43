//! The endpoints of recorded kinds: a profile of the target over `?seconds=N`.
//!
//! - [`Form::Window`] (Go's `/debug/pprof/profile`): `seconds` (default 30), always the pprof
//!   file;
//! - [`Form::Recorded`] (e.g. `threadcreate`): Go's profile is cumulative since the process
//!   started, but from outside only what happens while the agent watches can be seen, so this is
//!   always a recording: `?seconds=N` as Go's delta form, and without it the same 30-second
//!   default; `debug=1` (or more) gives Go's text form of the recorded window.

use std::sync::Arc;

use axum::response::Response;

use super::count_text::counts_by_stack;
use super::errors::PprofError;
use super::params::Params;
use super::recording::{record, Recorded};
use super::responses;
use super::state::SharedState;
use crate::kinds::{Endpoint, Form, Kind};
use crate::unwind::ModuleSet;

/// Go's default duration.
pub const DEFAULT_SECONDS: u64 = 30;

pub async fn serve(
    state: SharedState,
    kind: &'static Kind,
    endpoint: &'static Endpoint,
    params: Params,
) -> Result<Response, PprofError> {
    let seconds = params.seconds(state.settings.max_seconds)?;
    if endpoint.form == Form::Window {
        let recorded = record(&state, kind, seconds.unwrap_or(DEFAULT_SECONDS)).await?;
        return pprof_form(recorded, endpoint.name).await;
    }
    let debug = params.debug();
    if seconds.is_some() && debug != 0 {
        return Err(PprofError::bad_request(
            "seconds and debug params are incompatible",
        ));
    }
    let recorded = record(&state, kind, seconds.unwrap_or(DEFAULT_SECONDS)).await?;
    if debug > 0 {
        text_form(&state, recorded, endpoint.name).await
    } else if seconds.is_some() {
        // Go names a delta download after the profile, with "-delta".
        pprof_form(recorded, &format!("{}-delta", endpoint.name)).await
    } else {
        pprof_form(recorded, endpoint.name).await
    }
}

async fn pprof_form(recorded: Recorded, filename: &str) -> Result<Response, PprofError> {
    let profile = recorded.profile;
    let bytes = tokio::task::spawn_blocking(move || rprof_proto::encode_gzip(&profile)).await?;
    Ok(responses::profile(filename, bytes))
}

async fn text_form(
    state: &SharedState,
    recorded: Recorded,
    name: &'static str,
) -> Result<Response, PprofError> {
    let symbolizer = Arc::clone(&state.symbolizer);
    let Recorded { pid, profile } = recorded;
    let text = tokio::task::spawn_blocking(move || {
        // For the entry offsets: the modules now are the window's but for a rare dlclose.
        let modules = ModuleSet::load(pid, symbolizer).ok();
        counts_by_stack(name, &profile, modules.as_ref())
    })
    .await?;
    Ok(responses::text(text))
}
