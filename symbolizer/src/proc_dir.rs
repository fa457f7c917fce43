//! Where a process's process-wide `/proc` files are read from.
//!
//! They are normally under `/proc/PID`, which describes the process through its main thread.
//! But a main thread may exit (`pthread_exit` from `main`) while the others go on running the
//! program: it then stays a zombie until the last thread exits, and `/proc/PID/maps` reads
//! empty, `/proc/PID/exe`, `/proc/PID/root` and `/proc/PID/mem` fail, `/proc/PID/map_files` is
//! empty. The same files of any live thread, under `/proc/PID/task/TID`, still describe the
//! process (threads share the address space and the root), so that is where they are read then.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Threads looked at for a live one: bounds the work a process with a zombie main thread and
/// a huge number of threads can cause (any live thread will do, and the first usually is).
const MAX_TASKS_SCANNED: usize = 4096;

/// The directory whose `maps`, `mem`, `exe`, `root`... describe process `pid`: `/proc/PID`,
/// or, when the main thread has exited, `/proc/PID/task/TID` of a thread that has not.
pub fn process_dir(pid: u32) -> PathBuf {
    let leader = PathBuf::from(format!("/proc/{pid}"));
    if !is_zombie(&leader) {
        return leader;
    }
    live_thread(pid).map_or(leader, |tid| {
        PathBuf::from(format!("/proc/{pid}/task/{tid}"))
    })
}

/// Whether `pid` has exited as a whole: no task of it is alive. A zombie main thread with live
/// threads is a running process.
pub fn process_exited(pid: u32) -> bool {
    let leader = PathBuf::from(format!("/proc/{pid}"));
    match state(&leader) {
        None => true,
        Some('Z' | 'X') => live_thread(pid).is_none(),
        Some(_) => false,
    }
}

/// A thread of `pid` that is not a zombie. Listed by hand, at most `MAX_TASKS_SCANNED`:
/// procfs's task iterator opens every task's directory and has no bound.
pub fn live_thread(pid: u32) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .take(MAX_TASKS_SCANNED)
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&tid| {
            let dir = PathBuf::from(format!("/proc/{pid}/task/{tid}"));
            matches!(state(&dir), Some(s) if s != 'Z' && s != 'X')
        })
}

/// Reads at most `max` bytes of a `/proc` file as text. Not as UTF-8: the kernel prints names
/// (a thread's comm, a mapped file's path) as the raw bytes they are, which a program may set
/// to anything; invalid sequences become U+FFFD instead of failing the whole read.
pub fn read_text_lossy(path: &Path, max: u64) -> io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_end(&mut bytes)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}

fn is_zombie(dir: &Path) -> bool {
    matches!(state(dir), Some('Z' | 'X'))
}

/// The state letter of a `stat` file: the field after the parenthesized name, which may
/// itself hold ") ". Read by hand: this crate does not depend on procfs, whose `Process` also
/// wants a `/proc/PID` path while this reads a task's directory (or a test's), and only the
/// one letter is needed.
fn state(dir: &Path) -> Option<char> {
    let text = read_text_lossy(&dir.join("stat"), 4096).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_read_from_its_own_directory() {
        let pid = std::process::id();
        assert_eq!(process_dir(pid), PathBuf::from(format!("/proc/{pid}")));
        assert!(!process_exited(pid));
        assert!(live_thread(pid).is_some());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        std::fs::write(&path, b"42 (caf\xe9\xff) R 1").unwrap();
        let text = read_text_lossy(&path, 4096).unwrap();
        assert!(
            text.starts_with("42 (caf") && text.ends_with(") R 1"),
            "{text}"
        );
        assert_eq!(state(dir.path()), Some('R'));
    }

    #[test]
    fn a_missing_process_has_exited() {
        // PIDs never reach u32::MAX (pid_max is at most 2^22).
        assert!(process_exited(u32::MAX));
        assert_eq!(
            process_dir(u32::MAX),
            PathBuf::from(format!("/proc/{}", u32::MAX))
        );
    }
}
