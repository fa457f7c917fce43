//! poll(2) on perf event descriptors.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;

/// What poll(2) said about one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub readable: bool,
    /// The event's thread exited and nothing inherited its event: it will never be readable.
    pub hung_up: bool,
}

/// Waits until one of `fds` is readable or hung up, or `timeout` passes. `None` on timeout or
/// when a signal interrupted the wait (the caller's loop comes back anyway).
pub(crate) fn poll(
    fds: &[BorrowedFd<'_>],
    timeout: Duration,
) -> Result<Option<Vec<Readiness>>, Errno> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up: a timeout truncated to 0 ms would turn the caller's wait into a busy loop.
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    let millis = i32::try_from(millis).unwrap_or(i32::MAX);
    let count = libc::nfds_t::try_from(pollfds.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `pollfds` is a valid array of `count` pollfd structs, borrowed descriptors stay
    // open for the duration of the call.
    let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), count, millis) };
    match ready {
        0 => Ok(None),
        n if n > 0 => Ok(Some(pollfds.iter().map(readiness).collect())),
        _ => match Errno::last() {
            Errno::EINTR => Ok(None),
            errno => Err(errno),
        },
    }
}

fn readiness(pollfd: &libc::pollfd) -> Readiness {
    Readiness {
        readable: pollfd.revents & libc::POLLIN != 0,
        hung_up: pollfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
    }
}
