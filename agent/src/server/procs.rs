//! Processes as /proc shows them to the agent: a process's identity (PID plus start time), and
//! finding a process by name.

use std::io::Read;
use std::path::Path;

/// Longest command name the kernel keeps (TASK_COMM_LEN - 1): longer names are truncated.
const COMM_LEN: usize = 15;

/// One incarnation of a process. The start time tells a recycled PID from the process that
/// held it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incarnation {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    start_ticks: u64,
}

impl Incarnation {
    /// The process `pid` is now, if it exists and has not exited.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = Stat::read(pid)?;
        stat.alive().then_some(Incarnation {
            pid,
            start_ticks: stat.start_ticks,
        })
    }

    /// Still the same process, and not a zombie.
    pub fn is_alive(&self) -> bool {
        Incarnation::of(self.pid) == Some(*self)
    }

    /// The command name (comm), for messages.
    pub fn name(&self) -> String {
        Stat::read(self.pid).map(|s| s.comm).unwrap_or_default()
    }
}

/// The fields of /proc/PID/stat the server needs.
struct Stat {
    comm: String,
    state: char,
    start_ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let mut text = String::new();
        std::fs::File::open(format!("/proc/{pid}/stat"))
            .ok()?
            .take(4096)
            .read_to_string(&mut text)
            .ok()?;
        Stat::parse(&text)
    }

    fn parse(text: &str) -> Option<Stat> {
        // The name is in parentheses and may itself hold ") ": fields resume after the last.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
        // `fields` starts at field 3 (state); starttime is field 22.
        let state = fields.first()?.chars().next()?;
        let start_ticks = fields.get(19)?.parse().ok()?;
        Some(Stat {
            comm,
            state,
            start_ticks,
        })
    }

    fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The oldest live process named `name` (the parent, in a server that forks workers), other
/// than the agent itself.
pub fn find_by_name(name: &str) -> Option<Incarnation> {
    let me = std::process::id();
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let stat = Stat::read(pid)?;
            let matches = stat.alive()
                && (comm_matches(&stat.comm, name) || exe_name(pid).as_deref() == Some(name));
            matches.then_some(Incarnation {
                pid,
                start_ticks: stat.start_ticks,
            })
        })
        .min_by_key(|found| (found.start_ticks, found.pid))
}

/// Why the agent cannot read `pid`'s files, if it cannot: without ptrace access (another
/// user's process, no CAP_SYS_PTRACE) perf still samples, but nothing can be unwound or named,
/// thread snapshots have no stacks and threadcreate finds nothing to probe.
pub fn access_problem(pid: u32) -> Option<String> {
    // The maps may be readable even then (CAP_PERFMON suffices); the target's root, through
    // which its files are read, is not.
    let err = std::fs::read_link(format!("/proc/{pid}/root")).err()?;
    (err.kind() == std::io::ErrorKind::PermissionDenied).then(|| {
        format!(
            "no ptrace access to PID {pid}: its profiles will have no function names and its \
             thread dumps no stacks; run as root or the target's user, or grant CAP_SYS_PTRACE \
             (container: --cap-add SYS_PTRACE; Kubernetes: securityContext.capabilities.add: \
             [SYS_PTRACE])"
        )
    })
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
    fn stat_fields_come_after_the_last_parenthesis() {
        let text = "42 (my ) (server) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 \
                    1000 10 18446744073709551615";
        let stat = Stat::parse(text).expect("parses");
        assert_eq!(stat.comm, "my ) (server");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_ticks, 987654);
        assert!(stat.alive());
    }

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
        let own_name = Stat::read(me.pid).expect("own stat").comm;
        assert_ne!(find_by_name(&own_name).map(|found| found.pid), Some(me.pid));
    }
}
