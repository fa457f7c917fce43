//! Whether the process asked for can be sampled: a live user process, held by a
//! [`ProcessHandle`] for the whole session (its threads, whether it is still alive).

use std::io;

use procfs::ProcError;

use super::error::SamplerError;
use crate::proc::{is_exited, is_kernel_thread};
use crate::process_identity::ProcessHandle;

/// Checks that `pid` is a live user process, and holds it.
pub(crate) fn inspect(pid: u32) -> Result<ProcessHandle, SamplerError> {
    let target = ProcessHandle::attach(pid).map_err(|e| proc_error(pid, e))?;
    let stat = target.dir().stat().map_err(|e| proc_error(pid, e))?;
    if is_kernel_thread(&stat) {
        return Err(SamplerError::KernelThread(pid));
    }
    // A main thread that exited while others still run: the handle found a live one.
    if is_exited(&stat) {
        return Ok(target);
    }
    if !target.dir().has_address_space() {
        return Err(SamplerError::KernelThread(pid));
    }
    Ok(target)
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
        let target = inspect(std::process::id()).unwrap();
        assert!(target.is_alive());
        assert!(target.tasks().contains(&std::process::id()));
    }

    #[test]
    fn a_dead_process_has_no_tasks_and_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let target = inspect(child.id()).unwrap();
        assert_eq!(target.tasks(), vec![child.id()]);
        child.kill().unwrap();
        // Not reaped yet: a zombie, which is not alive either.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while target.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!target.is_alive());
        child.wait().unwrap();
        assert!(!target.is_alive());
        assert!(target.tasks().is_empty());
    }

    #[test]
    fn pid_zero_and_out_of_range_pids_do_not_exist() {
        assert!(matches!(inspect(0), Err(SamplerError::NoSuchProcess(0))));
        assert!(matches!(
            inspect(u32::MAX),
            Err(SamplerError::NoSuchProcess(_))
        ));
    }

    #[test]
    fn kernel_threads_are_refused() {
        // PID 2 is kthreadd on every Linux system.
        assert!(matches!(inspect(2), Err(SamplerError::KernelThread(2))));
    }
}
