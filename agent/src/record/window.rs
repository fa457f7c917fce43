//! The recording window: every recording of every process drained until the time is up, Ctrl-C,
//! or every process has exited; the processes the launched command starts are found and
//! recorded as they come.
//!
//! The first recording is drained on this thread, every other one on a thread of its own; raw
//! samples go to each recording's unwinder thread (see [`crate::recording`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use super::descendants::{Descendants, DISCOVERY_INTERVAL, MAX_FOLLOWED, MAX_RECORDED};
use super::followed::{Followed, Opener, Recorded, Recordings};
use super::progress::Progress;
use crate::cli::RecordArgs;
use crate::kinds::Kind;
use crate::recording::{next_wait, Outcome, Recording};
use crate::stop::StopFlag;

/// The processes being recorded.
pub struct Session<'a> {
    pub opener: &'a Opener<'a>,
    pub processes: Vec<Followed>,
    /// Finds the processes the launched command starts; None when they are not followed.
    pub descendants: Option<Descendants>,
}

/// A recording drained on a thread of its own, given back at the end with its process's index.
type Drained<'scope> = ScopedJoinHandle<'scope, (usize, &'static Kind, Box<dyn Recording>)>;

/// When the window ends, and what tells the drains it has.
struct Clock<'a> {
    start: Instant,
    length: Duration,
    done: &'a AtomicBool,
}

impl Clock<'_> {
    fn left(&self) -> Duration {
        self.length.saturating_sub(self.start.elapsed())
    }
}

impl Session<'_> {
    /// Drains every recording until the window ends, Ctrl-C, or every process has exited.
    pub fn record(&mut self, args: &RecordArgs, stop: &StopFlag, start: Instant) -> Outcome {
        let Some((owner, (kind, mut primary))) = self.take_primary() else {
            return Outcome::Elapsed;
        };
        let labels = self.labels(owner, &*primary);
        let progress = Progress::new(self.processes[owner].pid(), args.seconds, &labels);
        let done = AtomicBool::new(false);
        let clock = Clock {
            start,
            length: Duration::from_secs(args.seconds),
            done: &done,
        };
        // Children are looked for between two drains of the primary recording.
        let most = match self.descendants {
            Some(_) => DISCOVERY_INTERVAL,
            None => Duration::MAX,
        };
        let (outcome, drained) = std::thread::scope(|scope| {
            let mut drained = Vec::new();
            for index in 0..self.processes.len() {
                let process = &mut self.processes[index];
                let recordings = std::mem::take(&mut process.recordings);
                let gone = Arc::clone(&process.gone);
                drained.extend(drain_apart(scope, &clock, (index, gone), recordings));
            }
            let outcome = loop {
                if stop.is_set() {
                    break Outcome::Interrupted;
                }
                if clock.left().is_zero() {
                    break Outcome::Elapsed;
                }
                self.follow_children(scope, &clock, &mut drained);
                if !self.any_alive() {
                    break Outcome::TargetExited;
                }
                primary.pump(next_wait(clock.left()).min(most));
                progress.update(start.elapsed(), &primary.figures());
            };
            done.store(true, Ordering::Release);
            // The other recordings' threads may be waiting on their rings: end those waits now.
            crate::sampler::stop_waiting();
            let drained: Vec<_> = drained
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
                .collect();
            (outcome, drained)
        });
        progress.finish();
        self.processes[owner].recordings.insert(0, (kind, primary));
        for (index, kind, recording) in drained {
            self.processes[index].recordings.push((kind, recording));
        }
        outcome
    }

    /// The first recording of the first process that has one, taken out of it.
    fn take_primary(&mut self) -> Option<(usize, Recorded)> {
        let owner = self
            .processes
            .iter()
            .position(|process| !process.recordings.is_empty())?;
        Some((owner, self.processes[owner].recordings.remove(0)))
    }

    /// What drives the recordings of `owner`, for the progress line.
    fn labels(&self, owner: usize, primary: &dyn Recording) -> String {
        let others = self.processes[owner].recordings.iter();
        let labels: Vec<String> = std::iter::once(primary.label())
            .chain(others.map(|(_, recording)| recording.label()))
            .collect();
        labels.join(", ")
    }

    /// Whether any process still runs (noting their names meanwhile).
    fn any_alive(&mut self) -> bool {
        let mut alive = false;
        for process in &mut self.processes {
            alive |= process.refresh();
        }
        alive
    }

    /// Starts recording the processes the launched command started since the last look.
    fn follow_children<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        clock: &'scope Clock<'scope>,
        drained: &mut Vec<Drained<'scope>>,
    ) {
        let Some(descendants) = &mut self.descendants else {
            return;
        };
        let parents: Vec<u32> = self
            .processes
            .iter()
            .filter(|process| !process.exited)
            .map(Followed::pid)
            .collect();
        let room = MAX_FOLLOWED
            .saturating_sub(parents.len())
            .min(MAX_RECORDED.saturating_sub(self.processes.len()));
        for pid in descendants.new_ones(&parents, room) {
            let processes = &self.processes;
            let is_parent = |ppid: u32| {
                processes
                    .iter()
                    .any(|process| process.pid() == ppid && process.target.holds_pid())
            };
            let Some(mut child) = self.opener.child(pid, is_parent) else {
                continue;
            };
            let recordings = std::mem::take(&mut child.recordings);
            let owner = (self.processes.len(), Arc::clone(&child.gone));
            drained.extend(drain_apart(scope, clock, owner, recordings));
            self.processes.push(child);
        }
    }
}

/// Drains each of `recordings` of a process (its index, and whether it is gone) on a thread of
/// its own until the window is done, or until the process is gone: its recordings are stopped
/// then, which frees their rings and events at once (a command that starts many short-lived
/// processes would otherwise hold them all until the end).
fn drain_apart<'scope>(
    scope: &'scope Scope<'scope, '_>,
    clock: &'scope Clock<'scope>,
    (index, gone): (usize, Arc<AtomicBool>),
    recordings: Recordings,
) -> Vec<Drained<'scope>> {
    recordings
        .into_iter()
        .map(|(kind, mut recording)| {
            let gone = Arc::clone(&gone);
            scope.spawn(move || {
                while !clock.done.load(Ordering::Acquire) {
                    if gone.load(Ordering::Acquire) {
                        recording.stop();
                        break;
                    }
                    recording.pump(next_wait(clock.left()));
                }
                (index, kind, recording)
            })
        })
        .collect()
}
