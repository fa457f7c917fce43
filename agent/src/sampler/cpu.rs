//! Everything the sampler has on one CPU: the ring buffer, the events writing into it, and
//! which of those events to poll.
//!
//! The ring belongs to one event (its owner): with CPU-time sampling, the first thread's event
//! on this CPU; with uprobes, the first per-CPU probe event, which never exits.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;

use super::event::PerfEvent;
use super::poll;
use super::ring::Ring;

pub(crate) struct CpuEvents {
    cpu: u32,
    ring: Ring,
    /// The owner is a per-CPU event, enabled with `per_cpu` rather than as a thread's event.
    per_cpu_owner: bool,
    /// Per-CPU events besides the owner (further probes), redirected into `ring`.
    per_cpu: Vec<PerfEvent>,
    /// Events of threads on this CPU, redirected into `ring`, with the thread each was opened
    /// for.
    events: Vec<(u32, PerfEvent)>,
    /// poll(2) reports POLLHUP, at once and for good, on an event whose thread exited and left
    /// no inherited copies. Such an event can tell us nothing more, so another event of the
    /// ring is polled instead (every event of a ring is woken when it fills).
    owner_hung_up: bool,
}

impl CpuEvents {
    /// A ring owned by a thread's event.
    pub(crate) fn new(cpu: u32, ring: Ring) -> Self {
        CpuEvents {
            cpu,
            ring,
            per_cpu_owner: false,
            per_cpu: Vec::new(),
            events: Vec::new(),
            owner_hung_up: false,
        }
    }

    /// A ring owned by a per-CPU event, with `others` (per-CPU events opened on `cpu` too)
    /// redirected into it.
    pub(crate) fn per_cpu(cpu: u32, ring: Ring, others: Vec<PerfEvent>) -> Result<Self, Errno> {
        for event in &others {
            event.set_output(ring.owner())?;
        }
        Ok(CpuEvents {
            per_cpu_owner: true,
            per_cpu: others,
            ..CpuEvents::new(cpu, ring)
        })
    }

    pub(crate) fn cpu(&self) -> u32 {
        self.cpu
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    pub(crate) fn ring_mut(&mut self) -> &mut Ring {
        &mut self.ring
    }

    /// How many events of threads are open on this CPU (the ring's owner aside).
    #[cfg(test)]
    pub(crate) fn thread_events(&self) -> usize {
        self.events.len()
    }

    /// Redirects `event` (opened on this CPU) into the ring.
    pub(crate) fn connect(&self, event: &PerfEvent) -> Result<(), Errno> {
        event.set_output(self.ring.owner())
    }

    /// Keeps a connected event of thread `tid` open for as long as it can report anything (see
    /// [`CpuEvents::close_hung_up`]).
    pub(crate) fn keep(&mut self, tid: u32, event: PerfEvent) {
        self.events.push((tid, event));
    }

    /// Closes the events of the threads in `exited` that hung up: their thread exited and no
    /// thread it created still runs with an inherited copy, so they can never report again.
    /// Without this, every thread the sampler had to attach itself (one that showed up in
    /// /proc before the record of its creation was read) would keep one descriptor per CPU
    /// open until the recording ends: a leak that grows with thread churn. Returns the ids of
    /// the closed events and whether an event of each thread of `exited` is still open.
    pub(crate) fn close_hung_up(&mut self, exited: &HashSet<u32>) -> (Vec<u64>, HashSet<u32>) {
        let candidates: Vec<usize> = (0..self.events.len())
            .filter(|&i| exited.contains(&self.events[i].0))
            .collect();
        let mut still_open = HashSet::new();
        if candidates.is_empty() {
            return (Vec::new(), still_open);
        }
        let fds: Vec<BorrowedFd<'_>> = candidates
            .iter()
            .map(|&i| self.events[i].1.as_fd())
            .collect();
        // A hung-up event answers at once; a zero timeout never waits for the others. (Polling
        // one that still has inherited copies may take its ring's pending wakeup: the drain's
        // own timeout then brings the records a little later, none is lost.)
        let readiness = match poll::poll(&fds, Duration::ZERO) {
            Ok(Some(readiness)) => readiness,
            // Nothing hung up (or poll failed: try again at the next call).
            Ok(None) | Err(_) => {
                still_open.extend(candidates.iter().map(|&i| self.events[i].0));
                return (Vec::new(), still_open);
            }
        };
        drop(fds);
        let mut closed = Vec::new();
        // Highest index first, so that swap_remove leaves the lower candidates in place.
        for (&i, ready) in candidates.iter().zip(readiness).rev() {
            if !ready.hung_up {
                still_open.insert(self.events[i].0);
                continue;
            }
            let (_, event) = self.events.swap_remove(i);
            if let Ok(id) = event.id() {
                closed.push(id);
            }
        }
        (closed, still_open)
    }

    /// The event to poll for this ring, if any can still report data.
    pub(crate) fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        if self.owner_hung_up {
            self.events.first().map(|(_, event)| event.as_fd())
        } else {
            Some(self.ring.owner().as_fd())
        }
    }

    /// The polled event hung up: poll the next one. A hung-up non-owner event is closed; the
    /// owner stays open because the other events redirect their output to it.
    pub(crate) fn retire_poll_fd(&mut self) {
        if !self.owner_hung_up {
            self.owner_hung_up = true;
        } else if !self.events.is_empty() {
            self.events.swap_remove(0);
        }
    }

    /// Starts the per-CPU events (thread events start when their thread is attached).
    pub(crate) fn enable_per_cpu(&self) -> Result<(), Errno> {
        if self.per_cpu_owner {
            self.ring.owner().enable()?;
        }
        self.per_cpu.iter().try_for_each(PerfEvent::enable)
    }

    /// Sets the sampling period of every event on this CPU (threads created later inherit
    /// it from their creator's event).
    pub(crate) fn set_period(&self, period: u64) {
        // Failures only mean an event is already gone.
        for event in std::iter::once(self.ring.owner())
            .chain(&self.per_cpu)
            .chain(self.events.iter().map(|(_, event)| event))
        {
            let _ = event.set_period(period);
        }
    }

    /// Stops sampling on this CPU, inherited copies included.
    pub(crate) fn disable(&self) {
        // Failures only mean an event is already gone; teardown continues regardless.
        let _ = self.ring.owner().disable();
        for event in self
            .per_cpu
            .iter()
            .chain(self.events.iter().map(|(_, event)| event))
        {
            let _ = event.disable();
        }
    }
}
