//! Thread churn: how many threads the target created during the window, and how many of those
//! were already gone when it ended.

use std::collections::HashSet;
use std::fmt;

/// Counts thread creation and exit from the FORK and EXIT records of the target's threads.
#[derive(Debug, Default)]
pub struct Churn {
    /// Threads created in the window and not seen exiting (yet).
    live: HashSet<u32>,
    created: u64,
    exited: u64,
}

/// What [`Churn`] found over a whole window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChurnSummary {
    pub created: u64,
    /// Of the threads created in the window, those that exited in it too.
    pub exited: u64,
}

impl Churn {
    /// A FORK record: thread `tid` was created.
    pub fn created(&mut self, tid: u32) {
        // The kernel reuses a thread id only after its thread is gone: the earlier thread with
        // this id exited although its EXIT record did not reach us (lost with a full ring).
        if !self.live.insert(tid) {
            self.exited += 1;
        }
        self.created += 1;
    }

    /// An EXIT record: thread `tid` exited. Threads older than the window are not counted.
    pub fn exited(&mut self, tid: u32) {
        if self.live.remove(&tid) {
            self.exited += 1;
        }
    }

    /// Ends the window. `alive` are the target's threads now: a thread created in the window
    /// and missing from it exited without its EXIT record reaching us.
    pub fn finish(self, alive: &HashSet<u32>) -> ChurnSummary {
        let vanished = self.live.iter().filter(|tid| !alive.contains(tid)).count();
        ChurnSummary {
            created: self.created,
            exited: self.exited + vanished as u64,
        }
    }
}

impl fmt::Display for ChurnSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let threads = if self.created == 1 {
            "thread"
        } else {
            "threads"
        };
        write!(
            f,
            "created {} {threads}, {} exited within the window",
            self.created, self.exited
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_created_and_gone_in_the_window_are_churn() {
        let mut churn = Churn::default();
        churn.created(10);
        churn.created(11);
        churn.created(12);
        churn.exited(10);
        // A thread older than the window exits: not churn.
        churn.exited(3);
        let summary = churn.finish(&HashSet::from([11, 12, 3]));
        assert_eq!(
            summary,
            ChurnSummary {
                created: 3,
                exited: 1
            }
        );
        assert_eq!(
            summary.to_string(),
            "created 3 threads, 1 exited within the window"
        );
    }

    #[test]
    fn lost_exit_records_are_made_up_for() {
        let mut churn = Churn::default();
        churn.created(10);
        // 10 exited unseen, and its id was reused.
        churn.created(10);
        churn.created(11);
        // 11 exited unseen too, and is no longer listed at the end.
        let summary = churn.finish(&HashSet::from([10]));
        assert_eq!(
            summary,
            ChurnSummary {
                created: 3,
                exited: 2
            }
        );
    }
}
