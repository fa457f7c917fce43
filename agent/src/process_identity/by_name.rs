//! Finding a process by name, as `serve --process` and `record --process` do.

use std::path::Path;

use super::{process_alive, Incarnation};
use crate::proc::process_stat;

/// Longest command name the kernel keeps (TASK_COMM_LEN - 1): longer names are truncated.
const COMM_LEN: usize = 15;

/// The oldest live process named `name` (the parent, in a server that forks workers), other
/// than the agent itself.
pub fn find_by_name(name: &str) -> Option<Incarnation> {
    let me = std::process::id();
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let stat = process_stat(pid).ok()?;
            let matches = process_alive(pid, &stat)
                && (comm_matches(&stat.comm, name) || exe_name(pid).as_deref() == Some(name));
            matches.then_some(Incarnation::from_stat(pid, &stat))
        })
        .min_by_key(|found| (found.start_ticks(), found.pid))
}

/// Whether a comm is `name`, allowing for the kernel's truncation of long names.
fn comm_matches(comm: &str, name: &str) -> bool {
    let name = name.as_bytes();
    let truncated = &name[..name.len().min(COMM_LEN)];
    comm.as_bytes() == name || comm.as_bytes() == truncated
}

/// The file name of the process's executable ("name (deleted)" once the file was replaced,
/// as a deploy does). Needs ptrace access to the process: None without it.
fn exe_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = Path::new(&exe).file_name()?.to_str()?;
    Some(name.strip_suffix(" (deleted)").unwrap_or(name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_match_their_truncated_comm() {
        assert!(comm_matches("my-server", "my-server"));
        assert!(comm_matches("a-very-long-ser", "a-very-long-server-name"));
        assert!(!comm_matches("my-server", "my-serv"));
        assert!(!comm_matches("other", "my-server"));
    }

    #[test]
    fn the_agent_finds_its_own_parent_but_never_itself() {
        let me = Incarnation::of(std::process::id()).expect("we run");
        assert!(me.is_alive());
        let own_name = process_stat(me.pid).expect("own stat").comm;
        assert_ne!(find_by_name(&own_name).map(|found| found.pid), Some(me.pid));
    }
}
