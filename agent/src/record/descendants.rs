//! The processes a launched command starts, found while it runs: each round of the recording
//! window reads the children of every followed process (`/proc/PID/task/TID/children`), so that
//! a command run through a shell or a script is profiled, not only the shell.
//!
//! Polled, not traced: a child that is born and gone between two rounds
//! ([`DISCOVERY_INTERVAL`]) is missed. Children of a process that exits are reparented to init
//! and lost unless found before.

use std::collections::HashSet;
use std::time::Duration;

use crate::proc::{process_file, read_bounded, task_file, task_ids, SMALL_FILE_LIMIT};

/// How often new descendants are looked for while the window runs: short, since a child that
/// lives less than this may be missed, but not so short that the reads cost the target a core.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_millis(50);

/// Most processes followed at once, the command's included: each running one holds perf events
/// and rings (freed when it exits). A process started while this many run is not profiled.
pub const MAX_FOLLOWED: usize = 64;

/// Most processes followed in one recording: each keeps its profile and an idle unwinder thread
/// until the end. A command that starts more (a build) has its first ones profiled.
pub const MAX_RECORDED: usize = 256;

/// Ceiling for one thread's `children` file: a PID and a space each, for thousands of children.
const CHILDREN_FILE_LIMIT: u64 = 64 * 1024;

/// Most threads of one process whose children are read in one round: those of a process with
/// thousands of threads are read in turns (its main thread every round), so that a round costs
/// a bounded number of reads.
const TASKS_PER_ROUND: usize = 128;

/// Tells which descendants are new.
#[derive(Debug, Default)]
pub struct Descendants {
    /// Every PID seen so far (followed, refused or left out): each is reported once.
    seen: HashSet<u32>,
    /// Whether a process left out for the ceilings was reported.
    full_reported: bool,
    /// Rounds so far: whose turn it is among the threads of a large process.
    round: usize,
}

impl Descendants {
    /// Starts from the processes followed already.
    pub fn new(followed: impl IntoIterator<Item = u32>) -> Self {
        Descendants {
            seen: followed.into_iter().collect(),
            full_reported: false,
            round: 0,
        }
    }

    /// The children of `parents` (live followed processes) not seen before, and theirs,
    /// found now; at most `room` of them, the rest reported once and never followed.
    pub fn new_ones(&mut self, parents: &[u32], room: usize) -> Vec<u32> {
        let mut found = Vec::new();
        let mut pending: Vec<u32> = parents.to_vec();
        self.round = self.round.wrapping_add(1);
        while let Some(parent) = pending.pop() {
            for child in children(parent, self.round) {
                if !self.seen.insert(child) {
                    continue;
                }
                if found.len() >= room {
                    self.report_full(child);
                    continue;
                }
                found.push(child);
                // Its own children, if it forked before this round saw it.
                pending.push(child);
            }
        }
        found
    }

    fn report_full(&mut self, pid: u32) {
        if !self.full_reported {
            self.full_reported = true;
            eprintln!(
                "rprof-agent: PID {pid} is not profiled, nor any later process over the limits \
                 ({MAX_FOLLOWED} processes at once, {MAX_RECORDED} in all)"
            );
        }
    }
}

/// The children of the threads of `pid` whose turn it is in `round`, as /proc lists them now
/// (none once it is gone).
fn children(pid: u32, round: usize) -> Vec<u32> {
    let Ok(tids) = task_ids(&process_file(pid, "task")) else {
        return Vec::new();
    };
    std::iter::once(pid)
        .chain(in_turn(&tids, round).filter(|&tid| tid != pid))
        .filter_map(|tid| read_bounded(&task_file(pid, tid, "children"), CHILDREN_FILE_LIMIT).ok())
        .flat_map(|text| parse_pids(&text))
        .collect()
}

/// The threads among `tids` whose children are read in `round`: all of them, or
/// [`TASKS_PER_ROUND`] of them, the next ones each round.
fn in_turn(tids: &[u32], round: usize) -> impl Iterator<Item = u32> + '_ {
    let count = tids.len().min(TASKS_PER_ROUND);
    let start = match tids.len() {
        len if len <= TASKS_PER_ROUND => 0,
        len => round.wrapping_mul(TASKS_PER_ROUND) % len,
    };
    tids.iter().cycle().skip(start).take(count).copied()
}

/// The PIDs of a `children` file: decimal numbers separated by spaces.
fn parse_pids(text: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(text)
        .split_ascii_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// A process's name (comm) now, for its samples' `process` label.
pub fn process_name(pid: u32) -> Option<String> {
    let comm = read_bounded(&process_file(pid, "comm"), SMALL_FILE_LIMIT).ok()?;
    let name = String::from_utf8_lossy(&comm)
        .trim_end_matches('\n')
        .to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn children_files_are_read_leniently() {
        assert_eq!(parse_pids(b"12 345 6 \n"), vec![12, 345, 6]);
        assert_eq!(parse_pids(b""), Vec::<u32>::new());
        assert_eq!(parse_pids(b"7 x \xff 8"), vec![7, 8]);
    }

    #[test]
    fn the_threads_of_a_large_process_are_read_in_turns() {
        let few: Vec<u32> = (1..=3).collect();
        assert_eq!(in_turn(&few, 7).collect::<Vec<_>>(), few);
        let many: Vec<u32> = (0..300).collect();
        let mut read = HashSet::new();
        for round in 0..3 {
            let turn: Vec<u32> = in_turn(&many, round).collect();
            assert_eq!(turn.len(), TASKS_PER_ROUND);
            read.extend(turn);
        }
        assert_eq!(
            read.len(),
            many.len(),
            "every thread read within three rounds"
        );
        assert_eq!(in_turn(&[], 5).count(), 0);
    }

    #[test]
    fn a_new_child_is_found_once_and_the_ceiling_holds() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        let mut full = Descendants::new([me]);
        assert!(full.new_ones(&[me], 0).is_empty(), "no room, none followed");
        assert!(full.full_reported);
        let mut descendants = Descendants::new([me]);
        let found = descendants.new_ones(&[me], MAX_FOLLOWED);
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!descendants
            .new_ones(&[me], MAX_FOLLOWED)
            .contains(&child.id()));
        // Named after the parent's thread until its exec.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while process_name(child.id()).as_deref() != Some("sleep") {
            assert!(std::time::Instant::now() < deadline, "never named sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(process_name(child.id()), None);
    }
}
