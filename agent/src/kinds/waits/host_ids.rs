//! Learning how the tracepoints number the target's threads, for `mutex` in a container.
//!
//! A wakeup names the woken thread as the host's PID namespace numbers it ([`PidMap`]). A
//! thread's host id shows in the `common_pid` of any tracepoint that fires in it, but a thread
//! that only waits and never wakes anyone fires no `sched_waking` of its own: the waiter of a
//! lock whose holder never waits for it back. So while ids are missing, a window of
//! `sched:sched_switch` events (which fire in the thread leaving the CPU, i.e. in every waiter
//! as its wait begins) is open on the target's threads, in the wakeup sampler's rings. It
//! closes as soon as it taught nothing new is needed: at once in the host's namespace (ids are
//! the same), else once every thread is known, and after [`ARMED_AT_MOST`] in any case (a
//! thread that never leaves the CPU teaches nothing); an unknown wakee opens it again, after a
//! quiet time ([`QUIET`]). Wakeups of threads not known yet wait for their id a little while.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::aggregate::Observed;
use super::pid_map::PidMap;
use super::waking::{pid_at, tracepoint};
use crate::probes::tracefs::field_offset;
use crate::recording::Event;
use crate::sampler::{monotonic_ns, Sample, Sampler, WindowEvent};

/// The event, under tracefs' `events/`.
const EVENT: &str = "sched/sched_switch";
/// The longest a learning window stays open.
const ARMED_AT_MOST: Duration = Duration::from_secs(1);
/// The shortest time between a learning window's close and the next one's open; doubled
/// (up to [`MAX_QUIET`]) after each window that taught nothing, e.g. when the target wakes
/// threads of other processes, which no window of the target's can ever identify.
const QUIET: Duration = Duration::from_secs(1);
const MAX_QUIET: Duration = Duration::from_secs(32);
/// How long a wakeup of an unknown thread waits for its id (the woken thread's waits are
/// kept a few per thread: a later match would find them gone).
const HELD_NS: u64 = 250_000_000;
/// Wakeups held at most.
const MAX_HELD: usize = 1024;

/// The thread ids tracepoints use, learned from the target's threads, and the wakeups that
/// wait for one.
pub struct HostIds {
    switch: WindowEvent,
    common_pid_offset: usize,
    map: PidMap,
    /// When the open window opened, and how many ids were known then.
    armed_at: Option<(Instant, usize)>,
    /// When the last window closed, and the time to wait after it.
    closed_at: Option<Instant>,
    quiet: Duration,
    held: VecDeque<(u32, Event<Observed>)>,
    /// Wakeups dropped because their woken thread's id was never learned.
    pub unidentified: u64,
}

impl HostIds {
    /// Reads `sched_switch`'s id and layout from tracefs.
    pub fn find() -> Result<HostIds> {
        let (id, format, dir) = tracepoint(EVENT)?;
        let common_pid_offset = field_offset(&format, "common_pid")
            .with_context(|| format!("no common_pid field in {}", dir.join("format").display()))?;
        Ok(HostIds {
            // No stack: only the ids are wanted.
            switch: WindowEvent::KernelTracepoint { id },
            common_pid_offset,
            map: PidMap::default(),
            armed_at: None,
            closed_at: None,
            quiet: QUIET,
            held: VecDeque::new(),
            unidentified: 0,
        })
    }

    /// Opens the first learning window, on the threads `sampler` samples.
    pub fn start(&mut self, sampler: &mut Sampler) {
        self.arm(sampler);
    }

    /// Learns from a sample of the wakeup sampler: the thread it fired in is `common_pid`.
    /// Returns whether it was a learning event's (which has nothing else to say).
    pub fn learn(&mut self, sample: &Sample<'_>, common_pid: Option<u32>) -> bool {
        if self.switch.wrote(sample.raw) {
            if let Some(host) = pid_at(sample.raw, self.common_pid_offset) {
                self.map.learn(host, sample.tid);
            }
            return true;
        }
        if let Some(host) = common_pid {
            self.map.learn(host, sample.tid);
        }
        false
    }

    /// The wakeup `event` of thread `host`, with its woken thread as the agent knows it; or
    /// `None` while that is not known (the wakeup is held, see [`HostIds::review`]).
    pub fn translate(&mut self, host: u32, event: Event<Observed>) -> Option<Event<Observed>> {
        match self.map.translate(host) {
            Some(tid) => Some(with_wakee(event, tid)),
            None => {
                if self.held.len() >= MAX_HELD {
                    self.held.pop_front();
                    self.unidentified += 1;
                }
                self.held.push_back((host, event));
                None
            }
        }
    }

    /// After a drain: hands on (to `send`) the held wakeups whose thread is known now, drops
    /// those held too long, and opens or closes the learning window.
    pub fn review(&mut self, sampler: &mut Sampler, send: impl FnMut(Event<Observed>)) {
        let waiting = self.hand_on(send);
        self.steer_window(sampler, waiting);
    }

    /// At the recording's end: hands on the held wakeups whose thread is known, counts the
    /// rest, and closes the window (none is opened then).
    pub fn finish(&mut self, sampler: &mut Sampler, send: impl FnMut(Event<Observed>)) {
        self.hand_on(send);
        if self.armed_at.is_some() {
            self.disarm(sampler);
        }
        self.unidentified += self.held.len() as u64;
        self.held.clear();
    }

    /// Hands on the held wakeups whose thread is known now and drops those held too long.
    /// Returns whether some still wait.
    fn hand_on(&mut self, mut send: impl FnMut(Event<Observed>)) -> bool {
        let oldest = monotonic_ns().saturating_sub(HELD_NS);
        let mut waiting = false;
        for (host, event) in std::mem::take(&mut self.held) {
            if let Some(tid) = self.map.translate(host) {
                send(with_wakee(event, tid));
            } else if woke_at(&event) < oldest {
                self.unidentified += 1;
            } else {
                waiting = true;
                self.held.push_back((host, event));
            }
        }
        waiting
    }

    /// Closes the window once it has taught what it can; opens it again while wakeups wait.
    fn steer_window(&mut self, sampler: &mut Sampler, waiting: bool) {
        match self.armed_at {
            Some((at, _)) if self.map.proven_same() || at.elapsed() >= ARMED_AT_MOST => {
                self.disarm(sampler)
            }
            Some(_) if sampler.tasks().iter().all(|&tid| self.map.knows(tid)) => {
                self.disarm(sampler)
            }
            None if waiting && self.closed_at.is_none_or(|at| at.elapsed() >= self.quiet) => {
                self.arm(sampler)
            }
            _ => {}
        }
    }

    fn arm(&mut self, sampler: &mut Sampler) {
        let tids = sampler.tasks();
        match sampler.arm(&[self.switch], &tids) {
            Ok(armed) => {
                tracing::debug!(threads = armed.tids.len(), "sched_switch window open");
                self.armed_at = Some((Instant::now(), self.map.learned()));
            }
            // Wakeups of threads that woke nobody stay unpaired (counted); the rest works. Not
            // tried again at once: opening costs threads × CPUs events.
            Err(err) => {
                tracing::debug!("no sched_switch window to learn thread ids: {err}");
                self.closed_at = Some(Instant::now());
                self.quiet = (self.quiet * 2).min(MAX_QUIET);
            }
        }
    }

    fn disarm(&mut self, sampler: &mut Sampler) {
        sampler.disarm();
        tracing::debug!(
            learned = self.map.learned(),
            same = self.map.proven_same(),
            "sched_switch window closed"
        );
        if let Some((_, known)) = self.armed_at.take() {
            self.quiet = if self.map.learned() > known {
                QUIET
            } else {
                (self.quiet * 2).min(MAX_QUIET)
            };
        }
        self.closed_at = Some(Instant::now());
    }
}

/// The wakeup `event` with its woken thread set to `tid`.
fn with_wakee(mut event: Event<Observed>, tid: u32) -> Event<Observed> {
    if let Event::Sample {
        extra: Observed::Woke { wakee, .. },
        ..
    } = &mut event
    {
        *wakee = tid;
    }
    event
}

/// When a held wakeup happened.
fn woke_at(event: &Event<Observed>) -> u64 {
    match event {
        Event::Sample {
            extra: Observed::Woke { time, .. },
            ..
        } => *time,
        _ => 0,
    }
}
