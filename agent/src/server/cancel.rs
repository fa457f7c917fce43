//! When blocking work started for a request (a recording window) should end early: the server
//! is shutting down, or the client went away and its request future was dropped — as Go's
//! handlers stop when the request's context is done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::shutdown::Shutdown;

/// Polled by the blocking work.
#[derive(Clone)]
pub struct Cancel {
    shutdown: Shutdown,
    abandoned: Arc<AtomicBool>,
}

impl Cancel {
    pub fn is_set(&self) -> bool {
        self.shutdown.is_set() || self.abandoned.load(Ordering::Relaxed)
    }
}

/// Marks the work abandoned when dropped; the handler holds it across its await.
pub struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A cancel flag for one request's work, and the guard that raises it if the request is
/// dropped before the work ends.
pub fn for_request(shutdown: &Shutdown) -> (Cancel, AbandonOnDrop) {
    let abandoned = Arc::new(AtomicBool::new(false));
    let cancel = Cancel {
        shutdown: shutdown.clone(),
        abandoned: Arc::clone(&abandoned),
    };
    (cancel, AbandonOnDrop(abandoned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_by_shutdown_or_by_dropping_the_guard() {
        let shutdown = Shutdown::new();
        let (cancel, guard) = for_request(&shutdown);
        assert!(!cancel.is_set());
        drop(guard);
        assert!(cancel.is_set());

        let (cancel, _guard) = for_request(&shutdown);
        shutdown.trigger();
        assert!(cancel.is_set());
    }
}
