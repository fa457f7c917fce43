//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Why a process or a file could not be examined.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The process does not exist (or exited while we were reading it).
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    /// We lack the privileges to read something of the process.
    #[error(
        "permission denied reading {} of process {pid} (run as root, or grant CAP_SYS_PTRACE)",
        .path.display()
    )]
    PermissionDenied { pid: u32, path: PathBuf },
    /// Any other I/O failure.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not an ELF object we understand, or is malformed.
    #[error("{name}: {reason}")]
    Parse { name: String, reason: String },
}

impl Error {
    /// Classifies an I/O error hit while reading `path` of process `pid`.
    pub(crate) fn from_proc_io(pid: u32, path: PathBuf, source: io::Error) -> Error {
        match source.raw_os_error() {
            // ESRCH: the process exited between opening and reading.
            Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess(pid),
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { pid, path },
            _ => Error::Io { path, source },
        }
    }

    /// Classifies an I/O error hit while opening one of the process's mapped files: the file
    /// may be gone while the process lives on, so ENOENT is not "no such process" here.
    pub(crate) fn from_file_io(pid: u32, path: PathBuf, source: io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { pid, path },
            _ => Error::Io { path, source },
        }
    }

    pub(crate) fn parse(name: &str, reason: impl Into<String>) -> Error {
        Error::Parse {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}
