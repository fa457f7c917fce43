//! A descriptor every sampler wait polls besides the rings: readable once the agent is
//! stopping (Ctrl-C or SIGTERM in `record`, the end of `serve`), so that waits on every thread
//! end at once rather than at their timeout (up to a second, which keeps wakeups per sample
//! low). It stays readable: once stopping, every wait returns at once, which is what finishing
//! wants.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The two ends of the stopping socket pair; None where it could not be made (the waits then
/// end at their timeouts, as they would without it).
struct Stopping {
    read: UnixStream,
    write: UnixStream,
}

impl Stopping {
    fn new() -> Option<Stopping> {
        let (read, write) = UnixStream::pair().ok()?;
        // A full buffer must never block whoever signals stopping (the byte already in it
        // keeps the read end readable).
        write.set_nonblocking(true).ok()?;
        Some(Stopping { read, write })
    }

    fn stop(&self) {
        // Only fails when the buffer is full, that is when a wake is pending already.
        let _ = (&self.write).write(&[1]);
    }
}

static STOPPING: OnceLock<Option<Stopping>> = OnceLock::new();
/// Set by [`stop_waiting`], for loops that would otherwise wait again until a deadline.
static STOPPED: AtomicBool = AtomicBool::new(false);

fn stopping() -> Option<&'static Stopping> {
    STOPPING.get_or_init(Stopping::new).as_ref()
}

/// Makes `signals` wake every wait, from the signal handler itself: whichever thread the
/// kernel delivers them to, the others are not left waiting.
pub fn wake_on_signals(signals: &[libc::c_int]) -> std::io::Result<()> {
    let Some(stopping) = stopping() else {
        return Ok(());
    };
    for &signal in signals {
        signal_hook::low_level::pipe::register(signal, stopping.write.try_clone()?)?;
    }
    Ok(())
}

/// Wakes every wait, now and from now on.
pub fn stop_waiting() {
    STOPPED.store(true, Ordering::Relaxed);
    if let Some(stopping) = stopping() {
        stopping.stop();
    }
}

/// [`stop_waiting`] was called: waits return at once from now on.
pub fn is_stopping() -> bool {
    STOPPED.load(Ordering::Relaxed)
}

/// What a wait polls to learn that the agent is stopping.
pub(crate) fn fd() -> Option<BorrowedFd<'static>> {
    stopping().map(|stopping| stopping.read.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stop_makes_the_descriptor_readable_for_good() {
        // Its own pair: the process-wide one would end every other test's waits.
        let stopping = Stopping::new().expect("a socket pair");
        let ready = || {
            super::super::poll::poll(&[stopping.read.as_fd()], Duration::ZERO)
                .expect("poll")
                .is_some_and(|r| r[0].readable)
        };
        assert!(!ready(), "readable before any stop");
        stopping.stop();
        assert!(ready());
        stopping.stop();
        assert!(ready(), "still readable: nothing consumes it");
    }
}
