//! Writing output files so that a reader never sees half a profile, and so that nothing but
//! the file asked for is ever changed.
//!
//! What `-o PATH` does depends on what PATH is when the profile is written:
//!
//! - `-`: the profile goes to standard output;
//! - a regular file, or nothing yet: the profile is written to a new temporary file beside it,
//!   then renamed over it, so that an interrupted write leaves the old file or nothing;
//! - a symbolic link to a regular file: the file it leads to is replaced the same way (as `>`
//!   writes through a link), and the link itself is left as it is; a link to nothing is an
//!   error;
//! - anything else (a character device such as `/dev/null`, a FIFO, a socket, `/dev/stdout`
//!   and other links to such): opened and written to, as `>` would, never renamed over or
//!   unlinked.
//!
//! Temporary files are created exclusively under an unpredictable name (`O_CREAT | O_EXCL`,
//! which never follows a symbolic link), so a link planted in a shared directory is never
//! written through.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a profile goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// `-`: standard output.
    Stdout,
    /// Something that is not a regular file: opened and written to.
    Stream(PathBuf),
    /// A regular file (after following links) or a new path: replaced atomically.
    File(PathBuf),
}

impl Output {
    /// What `path` names now. Links are followed, so a link to a regular file is that file.
    pub fn of(path: &Path) -> io::Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => Ok(Output::File(fs::canonicalize(path)?)),
            Ok(meta) if meta.is_dir() => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory",
            )),
            Ok(_) => Ok(Output::Stream(path.to_path_buf())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => match fs::read_link(path) {
                // Writing would replace the link or create a file somewhere it names: neither
                // is what was asked.
                Ok(target) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("it is a link to {}, which does not exist", target.display()),
                )),
                Err(_) => Ok(Output::File(path.to_path_buf())),
            },
            Err(err) => Err(err),
        }
    }

    /// Whether this is not a file that can hold one profile per name: a stream takes whatever
    /// is written to it.
    pub fn is_stream(&self) -> bool {
        !matches!(self, Output::File(_))
    }

    /// Whether the profile goes where this process's standard output goes, so that messages
    /// must go elsewhere.
    pub fn shares_stdout(&self) -> bool {
        match self {
            Output::Stdout => true,
            Output::Stream(path) => same_file_as_stdout(path),
            Output::File(_) => false,
        }
    }

    /// Writes `bytes`, all of them, as described atop this module.
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(bytes)?;
                stdout.flush()
            }
            // No create, no truncate: a stream that vanished since is an error, not a new
            // file, and truncating means nothing to a device or a FIFO.
            Output::Stream(path) => OpenOptions::new().write(true).open(path)?.write_all(bytes),
            Output::File(path) => replace_atomically(path, bytes),
        }
    }
}

/// Writes `bytes` to `path` as described atop this module and returns what `path` was.
pub fn write_output(path: &Path, bytes: &[u8]) -> io::Result<Output> {
    let output = Output::of(path)?;
    output.write(bytes)?;
    Ok(output)
}

/// The directory a profile for `path` is written in.
pub fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// Writes `bytes` to a new temporary file beside `path`, then renames it over `path`: an
/// interrupted or failed write leaves either the old file or nothing, never a truncated
/// profile.
fn replace_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    // Exclusive creation with a random suffix; the umask applies to the mode, as for
    // `File::create`. Dropped on error, the temporary file is removed.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(directory_of(path))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Whether `path` is the very file (device and inode) this process's standard output is.
fn same_file_as_stdout(path: &Path) -> bool {
    let Ok(ours) = fs::metadata("/proc/self/fd/1") else {
        return false;
    };
    fs::metadata(path).is_ok_and(|theirs| theirs.dev() == ours.dev() && theirs.ino() == ours.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_is_stdout_and_devices_are_streams() {
        assert_eq!(Output::of(Path::new("-")).unwrap(), Output::Stdout);
        let null = Output::of(Path::new("/dev/null")).unwrap();
        assert_eq!(null, Output::Stream(PathBuf::from("/dev/null")));
        assert!(null.is_stream());
        assert!(Output::of(Path::new("/")).is_err());
    }

    #[test]
    fn a_link_to_a_file_replaces_the_file_and_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("real.pb.gz");
        let link = dir.path().join("link.pb.gz");
        fs::write(&file, b"old").unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let output = write_output(&link, b"new").unwrap();
        assert!(!output.is_stream());
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        // Nothing left behind: the link, the file.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_new_path_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.pb.gz");
        assert_eq!(
            write_output(&path, b"x").unwrap(),
            Output::File(path.clone())
        );
        assert_eq!(fs::read(&path).unwrap(), b"x");
    }
}
