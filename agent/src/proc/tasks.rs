//! The thread ids of a process, from a `task` directory.
//!
//! Read by hand: procfs's task iterator opens every task's directory as it lists it, a cost
//! paid for each of thousands of threads on every rescan, and it only lists `/proc/PID/task`
//! by path, not through a directory already held open.

use std::fs;
use std::io;
use std::path::Path;

/// Most threads listed for one process: far above `kernel.threads-max` defaults, it only keeps a
/// pathological /proc from exhausting memory.
pub const MAX_TASKS: usize = 1 << 20;

/// The task ids in `task_dir` (`/proc/PID/task`, or the same reached through a held
/// descriptor), in directory order, at most [`MAX_TASKS`].
pub fn task_ids(task_dir: &Path) -> io::Result<Vec<u32>> {
    let mut tids = Vec::new();
    for entry in fs::read_dir(task_dir)? {
        let name = entry?.file_name();
        if let Some(tid) = name.to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
        if tids.len() >= MAX_TASKS {
            break;
        }
    }
    Ok(tids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_its_own_threads_and_nothing_for_a_missing_process() {
        let pid = std::process::id();
        let tids = task_ids(Path::new(&format!("/proc/{pid}/task"))).unwrap();
        assert!(tids.contains(&pid));
        assert!(task_ids(Path::new(&format!("/proc/{}/task", u32::MAX))).is_err());
    }
}
