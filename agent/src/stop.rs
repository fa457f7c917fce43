//! Ctrl-C and SIGTERM: stop early, but finish the job (write what was captured).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set when the user asked us to stop. Signals only flip this flag; every loop polls it.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Routes SIGINT and SIGTERM to the flag. A second signal while we are still finishing falls
    /// back to the default action, so a stuck agent can always be interrupted.
    pub fn install() -> std::io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_default(signal, flag.clone())?;
            signal_hook::flag::register(signal, flag.clone())?;
        }
        // Waits on every thread end at once, not at their timeouts.
        crate::sampler::wake_on_signals(&[
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        Ok(StopFlag(flag))
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
