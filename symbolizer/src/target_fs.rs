//! Reading a target process's files and memory the way a container-aware tool must: through
//! `/proc/PID/map_files` and `/proc/PID/root`, never through our own view of the filesystem.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::maps::MapEntry;

/// The vdso is two pages today; anything much larger is not a vdso.
const MAX_VDSO_SIZE: u64 = 1 << 20;

/// A process's view of the filesystem: its root directory (`/proc/PID/root`, or `/` for our
/// own).
#[derive(Debug)]
pub(crate) struct TargetRoot {
    root: PathBuf,
    /// `O_PATH` descriptor of the root, for `openat2(RESOLVE_IN_ROOT)`.
    root_fd: Option<OwnedFd>,
}

impl TargetRoot {
    pub fn of_process(pid: u32) -> TargetRoot {
        TargetRoot::at(crate::proc_dir::process_dir(pid).join("root"))
    }

    pub fn host() -> TargetRoot {
        TargetRoot::at(PathBuf::from("/"))
    }

    fn at(root: PathBuf) -> TargetRoot {
        let root_fd = open_path_dir(&root).ok();
        TargetRoot { root, root_fd }
    }

    /// Opens the regular file `path` (absolute, as the target sees it) for reading. Symlinks
    /// are resolved inside the root (`openat2` with `RESOLVE_IN_ROOT`); on kernels without
    /// `openat2` the path is opened through `/proc/PID/root` and callers verify what they got
    /// (inode, build id, CRC).
    ///
    /// The target owns these paths: a FIFO or a device put where a file was expected must not
    /// block or feed us forever, so the open never blocks and anything but a regular file is
    /// refused.
    pub fn open(&self, path: &str) -> io::Result<File> {
        let file = self.open_nonblocking(path.trim_start_matches('/'))?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path} in the target's root is not a regular file"),
            ));
        }
        Ok(file)
    }

    fn open_nonblocking(&self, relative: &str) -> io::Result<File> {
        if let Some(root_fd) = &self.root_fd {
            match openat2_in_root(root_fd, relative) {
                Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => {}
                result => return result,
            }
        }
        open_regular_nonblocking(&self.root.join(relative))
    }
}

/// Opens the file behind one mapping of process `pid`: `/proc/PID/map_files/START-END` first
/// (works for deleted files and across mount namespaces; needs CAP_SYS_ADMIN or, since Linux
/// 5.9, CAP_CHECKPOINT_RESTORE), then the maps path inside the target's root, accepted only if
/// it is the very inode that is mapped.
///
/// With `strict`, for an entry that did not come from a fresh read of the maps (a perf record
/// about a mapping that may have been replaced since), the file behind `map_files` is accepted
/// only if it is the entry's inode too.
pub(crate) fn open_mapped_file(
    pid: u32,
    root: &TargetRoot,
    entry: &MapEntry,
    strict: bool,
) -> io::Result<File> {
    let map_file = format!("/proc/{pid}/map_files/{}", entry.map_files_name());
    let map_files_err = match open_regular_nonblocking(Path::new(&map_file)) {
        Ok(file) if !strict || entry.inode == 0 || is_same_file(&file.metadata()?, entry) => {
            return Ok(file)
        }
        Ok(_) => io::Error::other(format!(
            "{map_file} maps another file than {} now",
            entry.path
        )),
        Err(err) => err,
    };
    if entry.deleted {
        return Err(map_files_err);
    }
    let file = root.open(&entry.path)?;
    if is_same_file(&file.metadata()?, entry) {
        Ok(file)
    } else {
        Err(io::Error::other(format!(
            "{} in the target's root is not the mapped file (replaced since it was mapped?)",
            entry.path
        )))
    }
}

/// The executable file behind one mapping of process `pid`, opened as
/// [`open_mapped_file`] does (strictly: the mapped inode or nothing).
pub fn open_mapping(pid: u32, entry: &MapEntry) -> io::Result<File> {
    open_mapped_file(pid, &TargetRoot::of_process(pid), entry, true)
}

/// Opens a regular file without blocking: a device or FIFO can be mapped too (a target may
/// map one executable), and must neither hang nor feed us without end.
fn open_regular_nonblocking(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Whether `metadata` describes the inode a maps line shows. Overlay filesystems report the
/// overlay device in `stat` but the underlying one in maps, so the inode number decides when
/// the devices differ.
fn is_same_file(metadata: &std::fs::Metadata, entry: &MapEntry) -> bool {
    metadata.ino() == entry.inode
}

/// Reads the vdso image from the target's own `[vdso]` mapping (each kernel, and each
/// architecture personality, has its own).
pub(crate) fn read_vdso(pid: u32, entry: &MapEntry) -> io::Result<Vec<u8>> {
    read_memory(
        pid,
        entry.start,
        entry.end.saturating_sub(entry.start),
        MAX_VDSO_SIZE,
    )
}

fn read_memory(pid: u32, address: u64, len: u64, max: u64) -> io::Result<Vec<u8>> {
    if len == 0 || len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("refusing to read {len} bytes of process memory"),
        ));
    }
    let mem = File::open(crate::proc_dir::process_dir(pid).join("mem"))?;
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    mem.read_exact_at(&mut buf, address)?;
    Ok(buf)
}

fn open_path_dir(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c_path` is a valid NUL-terminated string; the returned descriptor is owned.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(root, path, O_RDONLY | O_NONBLOCK, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..`
/// and absolute symlinks cannot leave `root`.
fn openat2_in_root(root: &OwnedFd, relative: &str) -> io::Result<File> {
    let c_path = CString::new(relative)?;
    // SAFETY: `open_how` is a plain C struct; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags =
        u64::try_from(libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK).unwrap_or_default();
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, NUL-terminated path, and a correctly sized `open_how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn symlinks_and_dot_dot_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/inside"), "inside").unwrap();
        // An absolute symlink, as container images have them (/lib -> /usr/lib and the like).
        std::os::unix::fs::symlink("/etc", dir.path().join("lib")).unwrap();
        let root = TargetRoot::at(dir.path().to_owned());

        let mut text = String::new();
        root.open("/lib/inside")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "inside");
        // The host's /etc/passwd exists, but is not the target's.
        assert!(Path::new("/etc/passwd").exists());
        assert!(root.open("/lib/passwd").is_err());
        assert!(root.open("/../../../etc/passwd").is_err());
    }

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = CString::new(dir.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(dir.path().join("dir")).unwrap();
        let root = TargetRoot::at(dir.path().to_owned());

        // No writer ever opens the FIFO: a blocking open would hang this test.
        let err = root.open("/fifo").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(root.open("/dir").is_err());
    }
}
