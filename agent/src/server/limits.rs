//! What bounds the work requests can make the agent do, besides `--max-seconds`:
//!
//! - one recording per kind at a time, as Go's runtime allows one CPU profile: a second is
//!   refused at once, in Go's words;
//! - thread snapshots one at a time (only one tracer can seize a thread: two snapshots of one
//!   process at once would fail), and symbol lookups two at a time, each behind a short line
//!   of waiting requests; past that, 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::PprofError;
use crate::kinds::{self, Kind};

/// Requests that may wait for a snapshot or a lookup, beyond those being served.
const MAX_WAITING: usize = 8;
/// How long a request may wait for its turn.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Symbol lookups served at once (two cores: leave one to everything else).
const CONCURRENT_LOOKUPS: usize = 2;

/// All the limits of one server.
pub struct Limits {
    /// One permit per recorded kind, by name.
    recordings: HashMap<&'static str, Arc<Semaphore>>,
    pub snapshots: Line,
    pub lookups: Line,
}

impl Limits {
    pub fn new() -> Self {
        Limits {
            recordings: kinds::recorded()
                .map(|kind| (kind.name, Arc::new(Semaphore::new(1))))
                .collect(),
            snapshots: Line::new("thread snapshot", 1),
            lookups: Line::new("symbol lookup", CONCURRENT_LOOKUPS),
        }
    }

    /// The right to run a `kind` recording, if none runs; held until dropped.
    pub fn try_record(&self, kind: &Kind) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.recordings.get(kind.name)?;
        Arc::clone(semaphore).try_acquire_owned().ok()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

/// At most `concurrency` requests served at once, at most [`MAX_WAITING`] more waiting.
pub struct Line {
    what: &'static str,
    serving: Arc<Semaphore>,
    places: Arc<Semaphore>,
}

/// A request's turn: its place in line and the right to be served, released when dropped.
pub struct Turn {
    _place: OwnedSemaphorePermit,
    _serving: OwnedSemaphorePermit,
}

impl Line {
    fn new(what: &'static str, concurrency: usize) -> Self {
        Line {
            what,
            serving: Arc::new(Semaphore::new(concurrency)),
            places: Arc::new(Semaphore::new(concurrency + MAX_WAITING)),
        }
    }

    /// Waits for this request's turn; 503 if the line is full or the wait too long.
    pub async fn enter(&self) -> Result<Turn, PprofError> {
        let busy = || {
            PprofError::unavailable(format!(
                "too many {} requests at once; try again shortly",
                self.what
            ))
        };
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| busy())?;
        let serving = tokio::time::timeout(MAX_WAIT, Arc::clone(&self.serving).acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        Ok(Turn {
            _place: place,
            _serving: serving,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_recording_per_kind() {
        let limits = Limits::new();
        let (cpu_kind, threadcreate) = (&kinds::cpu::KIND, &kinds::threadcreate::KIND);
        let cpu = limits.try_record(cpu_kind).expect("first CPU profile");
        assert!(limits.try_record(cpu_kind).is_none());
        assert!(limits.try_record(threadcreate).is_some());
        drop(cpu);
        assert!(limits.try_record(cpu_kind).is_some());
        assert!(
            limits.try_record(&kinds::threads::KIND).is_none(),
            "not recorded"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_line_turns_requests_away() {
        let line = Line::new("test", 1);
        let mut turns = vec![line.enter().await.expect("served")];
        // The others would wait: take their places directly.
        let waiting: Vec<_> = (0..MAX_WAITING)
            .map(|_| {
                Arc::clone(&line.places)
                    .try_acquire_owned()
                    .expect("a place")
            })
            .collect();
        let refused = line.enter().await.err().expect("refused");
        assert_eq!(
            refused.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        drop(waiting);
        drop(turns.pop());
        assert!(line.enter().await.is_ok());
    }
}
