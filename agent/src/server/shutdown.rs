//! Graceful shutdown: the first SIGINT or SIGTERM stops accepting connections and cuts
//! in-flight recordings short (their profiles are still sent); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Set once, when the server starts shutting down. Blocking threads poll [`Shutdown::is_set`];
/// tasks await [`Shutdown::wait`].
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    notify: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            notify: Arc::new(watch::channel(false).0),
        }
    }

    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.notify.send_replace(true);
        // Recordings waiting on their rings in blocking threads see the flag now, not at the
        // end of their wait.
        crate::sampler::stop_waiting();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Returns once shutdown has been triggered.
    pub async fn wait(&self) {
        let mut changes = self.notify.subscribe();
        // Only fails if the sender is gone, and `self` holds it.
        let _ = changes.wait_for(|&set| set).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// From now on, the first SIGINT or SIGTERM triggers `shutdown`, and the next one exits the
/// process (an operator who signals twice wants the agent gone, in-flight profiles or not).
pub fn on_signals(shutdown: Shutdown) -> std::io::Result<JoinHandle<()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::spawn(async move {
        let first = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            "{first}: shutting down; in-flight profiles end now and are still sent (signal \
             again to exit at once)"
        );
        shutdown.trigger();
        let code = tokio::select! {
            _ = interrupt.recv() => 128 + libc::SIGINT,
            _ = terminate.recv() => 128 + libc::SIGTERM,
        };
        tracing::warn!("second signal: exiting without finishing in-flight requests");
        std::process::exit(code);
    }))
}
