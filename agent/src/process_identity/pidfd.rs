//! pidfds: a descriptor that names one process, whatever happens to its PID.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the pidfd's process: never to another that got its PID since.
pub(super) fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a descriptor we own, a signal number, no siginfo (NULL), no flags.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd polls readable once its process has exited (zombie or reaped).
pub(super) fn pidfd_readable(pidfd: &OwnedFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, a descriptor we own for the duration of the call, no wait.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        match ready {
            0 => return false,
            n if n > 0 => return pollfd.revents & (libc::POLLIN | libc::POLLHUP) != 0,
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            // Cannot happen with a valid descriptor; assume the worst rather than run on.
            _ => return true,
        }
    }
}
