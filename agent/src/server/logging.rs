//! The server's log on stderr: info level by default (one line per request is the point), -v
//! for debug, RUST_LOG to override; colors only on a terminal.
//!
//! The binary's global subscriber is set up for the batch verbs, at warn. Rather than fight it,
//! `serve` gives every thread of its runtime (and the thread that drives it) a default
//! dispatcher of its own; threads the server does not create (a recording's unwinder) keep the
//! global one.

use std::cell::RefCell;
use std::io::IsTerminal;

use tracing::dispatcher::{self, DefaultGuard, Dispatch};
use tracing_subscriber::EnvFilter;

thread_local! {
    /// Keeps this thread's default dispatcher installed for the thread's life.
    static INSTALLED: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// The server's subscriber: stderr, no module targets, level from `-v` or RUST_LOG.
pub fn dispatch(verbose: u8) -> Dispatch {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A sidecar's stderr is a log collector, not a terminal: no color codes there.
        .with_ansi(std::io::stderr().is_terminal())
        .finish();
    Dispatch::new(subscriber)
}

/// Makes `dispatch` the calling thread's default for as long as the thread lives.
pub fn install_on_this_thread(dispatch: &Dispatch) {
    let guard = dispatcher::set_default(dispatch);
    INSTALLED.with(|installed| *installed.borrow_mut() = Some(guard));
}
