//! What every handler shares.

use std::sync::Arc;

use rprof_symbolizer::Symbolizer;

use super::limits::Limits;
use super::shutdown::Shutdown;
use super::target::TargetWatch;

/// Profile settings from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Longest `?seconds=N` accepted.
    pub max_seconds: u64,
    /// CPU sampling frequency, Hz.
    pub frequency: u64,
    /// Thread snapshots never stop the target.
    pub nonblocking: bool,
}

/// The server's state, behind an `Arc`.
pub struct AppState {
    pub settings: Settings,
    pub target: TargetWatch,
    /// One cache of parsed binaries for every profile and lookup.
    pub symbolizer: Arc<Symbolizer>,
    pub limits: Limits,
    pub shutdown: Shutdown,
}

pub type SharedState = Arc<AppState>;
