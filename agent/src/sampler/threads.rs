//! The target process as /proc shows it: whether it can be sampled, its threads, whether it is
//! still alive.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;

use procfs::process::{Process, Stat};
use procfs::ProcError;

use super::error::SamplerError;

/// `PF_KTHREAD` in the flags field of /proc/PID/stat.
const PF_KTHREAD: u32 = 0x0020_0000;

pub(crate) struct Target {
    pid: u32,
    /// Holds /proc/PID open: if the process dies and its PID is reused, reads through this
    /// handle fail instead of describing the newcomer.
    process: Process,
    /// /proc/PID again, for listing tasks through /proc/self/fd with the same guarantee
    /// (procfs's own task iterator opens every task directory, too costly to rescan often).
    dir: File,
    /// Start time in clock ticks after boot, a second guard against PID reuse.
    start_time: u64,
}

impl Target {
    /// Checks that `pid` is a live user process.
    pub(crate) fn inspect(pid: u32) -> Result<Target, SamplerError> {
        let no_such_process = || SamplerError::NoSuchProcess(pid);
        let raw_pid = i32::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(no_such_process)?;
        let process = Process::new(raw_pid).map_err(|e| proc_error(pid, e))?;
        let stat = process.stat().map_err(|e| proc_error(pid, e))?;
        let dir = File::open(format!("/proc/{pid}")).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => no_such_process(),
            _ => SamplerError::io("open /proc/PID", e),
        })?;
        if stat.flags & PF_KTHREAD != 0 {
            return Err(SamplerError::KernelThread(pid));
        }
        let target = Target {
            pid,
            process,
            dir,
            start_time: stat.starttime,
        };
        if is_dead(&stat) {
            // The main thread may have exited while others still run.
            return if target.any_task_alive() {
                Ok(target)
            } else {
                Err(no_such_process())
            };
        }
        if !target.has_address_space() {
            return Err(SamplerError::KernelThread(pid));
        }
        Ok(target)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The thread ids listed in /proc/PID/task now. Empty once the process is gone.
    pub(crate) fn tasks(&self) -> Vec<u32> {
        let task_dir = format!("/proc/self/fd/{}/task", self.dir.as_raw_fd());
        let Ok(entries) = fs::read_dir(task_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The process still exists (same process, not a zombie) and has a thread that runs.
    pub(crate) fn alive(&self) -> bool {
        match self.process.stat() {
            Ok(stat) if stat.starttime == self.start_time => {
                !is_dead(&stat) || self.any_task_alive()
            }
            _ => false,
        }
    }

    fn any_task_alive(&self) -> bool {
        let Ok(tasks) = self.process.tasks() else {
            return false;
        };
        tasks
            .filter_map(Result::ok)
            .any(|task| task.stat().is_ok_and(|stat| !is_dead(&stat)))
    }

    /// Kernel threads have no executable and no mappings. Unreadable maps (no permission) say
    /// nothing, so only a readable, empty maps file counts.
    fn has_address_space(&self) -> bool {
        if self.process.exe().is_ok() {
            return true;
        }
        !matches!(self.process.maps(), Ok(maps) if maps.0.is_empty())
    }
}

fn is_dead(stat: &Stat) -> bool {
    matches!(stat.state, 'Z' | 'X' | 'x')
}

fn proc_error(pid: u32, error: ProcError) -> SamplerError {
    match error {
        ProcError::NotFound(_) => SamplerError::NoSuchProcess(pid),
        other => SamplerError::io("read /proc/PID/stat", io::Error::other(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_a_live_target_with_threads() {
        let target = Target::inspect(std::process::id()).unwrap();
        assert!(target.alive());
        assert!(target.tasks().contains(&std::process::id()));
    }

    #[test]
    fn a_dead_process_has_no_tasks_and_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let target = Target::inspect(child.id()).unwrap();
        assert_eq!(target.tasks(), vec![child.id()]);
        child.kill().unwrap();
        // Not reaped yet: a zombie, which is not alive either.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while target.alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!target.alive());
        child.wait().unwrap();
        assert!(!target.alive());
        assert!(target.tasks().is_empty());
    }

    #[test]
    fn pid_zero_and_out_of_range_pids_do_not_exist() {
        assert!(matches!(
            Target::inspect(0),
            Err(SamplerError::NoSuchProcess(0))
        ));
        assert!(matches!(
            Target::inspect(u32::MAX),
            Err(SamplerError::NoSuchProcess(_))
        ));
    }
}
