//! `/debug/pprof/profile?seconds=N`: a CPU profile of the target, shaped like Go's.

use axum::extract::State;
use axum::response::Response;

use super::errors::PprofError;
use super::params::Params;
use super::recording::record;
use super::responses;
use super::state::SharedState;
use crate::cli::ProfileKind;

/// Go's default duration.
pub const DEFAULT_SECONDS: u64 = 30;

pub async fn profile(
    State(state): State<SharedState>,
    params: Params,
) -> Result<Response, PprofError> {
    let seconds = params
        .seconds(state.settings.max_seconds)?
        .unwrap_or(DEFAULT_SECONDS);
    let profile = record(&state, ProfileKind::Cpu, seconds).await?.profile;
    let bytes = tokio::task::spawn_blocking(move || rprof_proto::encode_gzip(&profile)).await?;
    Ok(responses::profile("profile", bytes))
}
