//! Bounded reads of /proc files. The kernel formats them, but their size depends on the target
//! (thread names, number of mappings, CPU masks), so every read has a ceiling.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Ceiling for one-line files: stat, syscall, wchan.
pub const SMALL_FILE_LIMIT: u64 = 4 * 1024;
/// Ceiling for status, whose CPU and memory-node masks grow with the machine.
pub const STATUS_FILE_LIMIT: u64 = 64 * 1024;

/// Reads at most `limit` bytes of a file; a longer file is silently truncated.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit.min(SMALL_FILE_LIMIT) as usize);
    File::open(path)?.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

/// `/proc/PID/NAME`.
pub fn process_file(pid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// `/proc/PID/task/TID/NAME`.
pub fn task_file(pid: u32, tid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{name}"))
}
