//! The recording window all profiles of one `record` (or one request) share.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub pid: u32,
    pub start: SystemTime,
    pub duration: Duration,
    pub outcome: Outcome,
}

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Elapsed,
    Interrupted,
    TargetExited,
}

impl Outcome {
    /// What the summary line says about it.
    pub fn note(self) -> &'static str {
        match self {
            Outcome::Elapsed => "",
            Outcome::Interrupted => " (stopped early)",
            Outcome::TargetExited => " (target exited)",
        }
    }
}
