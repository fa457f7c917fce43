//! A process's `/proc/PID` directory, held open.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use procfs::process::{Process, Stat};
use procfs::ProcError;

use super::stat::{is_exited, read_stat};
use super::tasks::task_ids;

/// `/proc/PID`, opened once. If the process dies and its PID is reused, reads through it fail
/// instead of describing the newcomer.
#[derive(Debug)]
pub struct ProcDir {
    /// For procfs's parsers, which read relative to the directory it holds.
    process: Process,
    /// The directory again, for listing tasks through `/proc/self/fd` with the same guarantee
    /// (procfs keeps its descriptor to itself).
    dir: File,
}

impl ProcDir {
    /// Opens `/proc/PID`; [`ProcError::NotFound`] if there is no such process.
    pub fn open(pid: u32) -> Result<ProcDir, ProcError> {
        let raw_pid = i32::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .ok_or(ProcError::NotFound(None))?;
        let process = Process::new(raw_pid)?;
        let path = PathBuf::from(format!("/proc/{pid}"));
        let dir = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ProcError::NotFound(Some(path)),
            _ => ProcError::Io(e, Some(path)),
        })?;
        Ok(ProcDir { process, dir })
    }

    /// The main thread's stat.
    pub fn stat(&self) -> Result<Stat, ProcError> {
        read_stat(&self.process)
    }

    /// The thread ids listed now; empty once the process is gone.
    pub fn tasks(&self) -> Vec<u32> {
        let task_dir = format!("/proc/self/fd/{}/task", self.dir.as_raw_fd());
        task_ids(task_dir.as_ref()).unwrap_or_default()
    }

    /// Whether a thread has not exited: the main thread may have while others run.
    pub fn any_task_alive(&self) -> bool {
        let Ok(tasks) = self.process.tasks() else {
            return false;
        };
        tasks
            .filter_map(Result::ok)
            .any(|task| task.stat().is_ok_and(|stat| !is_exited(&stat)))
    }

    /// Kernel threads have no executable and no mappings. Unreadable maps (no permission) say
    /// nothing, so only a readable, empty maps file counts.
    pub fn has_address_space(&self) -> bool {
        if self.process.exe().is_ok() {
            return true;
        }
        !matches!(self.process.maps(), Ok(maps) if maps.0.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_threads_and_an_address_space() {
        let dir = ProcDir::open(std::process::id()).unwrap();
        assert!(dir.tasks().contains(&std::process::id()));
        assert!(dir.any_task_alive());
        assert!(dir.has_address_space());
        assert!(matches!(ProcDir::open(0), Err(ProcError::NotFound(_))));
        assert!(matches!(
            ProcDir::open(u32::MAX),
            Err(ProcError::NotFound(_))
        ));
    }
}
