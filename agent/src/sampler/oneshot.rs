//! One sample of each of a few threads, taken while they run: their user registers and a copy
//! of their user stack at one moment, without stopping them (what a thread snapshot needs for
//! the threads that are not blocked in the kernel).
//!
//! Each thread gets a cpu-clock event per CPU with a short period, redirected into one ring per
//! CPU as the sampler's own events are, and armed with `PERF_EVENT_IOC_REFRESH(1)`: the kernel
//! disables an event after its first sample. A thread that has been sampled has its other
//! events disabled too, so the rings hold at most a sample or two per thread. The sample is
//! taken in the timer interrupt, on the thread's own CPU, while it is not executing: registers
//! and stack belong to one moment. Closing the events ends everything; nothing of the target
//! is changed.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use perf_event_open_sys::bindings::perf_event_attr;

use super::attr;
use super::error::SamplerError;
use super::event::PerfEvent;
use super::host;
use super::poll;
use super::record::{self, DecodeScratch, Decoded, Record, SampleFormat};
use super::ring::{Ring, RingPlan};

/// CPU time between two ticks of a thread's clock: a thread on a CPU is sampled within this
/// much of its running time (the kernel's floor for the cpu-clock is 10 µs).
const PERIOD_NS: u64 = 100_000;

/// Each ring holds a few full-size samples; satisfied threads stop writing, and a ring that
/// overflows anyway has its unsampled threads re-armed.
const RING_PLAN: RingPlan = RingPlan {
    preferred_bytes: 1 << 20,
    minimum_bytes: 128 << 10,
    wanted_bytes: 1 << 20,
};

/// How long one wait for samples lasts before the rings are read again.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// A thread's registers and stack at the moment it was sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSample {
    pub tid: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// The valid part of the kernel's copy, from `sp` up.
    pub stack: Vec<u8>,
}

/// Samples each of `tids` once, waiting at most `wait` for threads that do not run. Returns
/// the samples taken (threads that exited or never ran within `wait` have none).
pub fn sample_each(
    tids: &[u32],
    stack_bytes: u32,
    wait: Duration,
) -> Result<Vec<ThreadSample>, SamplerError> {
    if tids.is_empty() {
        return Ok(Vec::new());
    }
    let mut shot = OneShot::open(tids, stack_bytes)?;
    shot.collect(Instant::now() + wait);
    Ok(std::mem::take(&mut shot.samples).into_values().collect())
}

/// The events and rings of one round of sampling.
struct OneShot {
    rings: Vec<Ring>,
    /// Every thread's events, one per CPU (the ring owners' aside).
    events: HashMap<u32, Vec<PerfEvent>>,
    samples: HashMap<u32, ThreadSample>,
    scratch: DecodeScratch,
}

impl OneShot {
    /// Opens and arms every thread's events. Kernel ticks too where allowed (a thread running
    /// in a system call is then sampled with the registers it entered the kernel with), user
    /// ticks only where `perf_event_paranoid` refuses those.
    fn open(tids: &[u32], stack_bytes: u32) -> Result<OneShot, SamplerError> {
        let cpus = host::online_cpus()
            .map_err(|e| SamplerError::io("read /sys/devices/system/cpu/online", e))?;
        // One descriptor per thread and CPU: many running threads outgrow the default 1024.
        if let Err(error) = host::raise_nofile_limit() {
            tracing::debug!(%error, "could not raise the open-file limit");
        }
        let attr = attr::one_shot(stack_bytes, PERIOD_NS, false);
        let opened = match open_all(&attr, tids, &cpus) {
            Err(Errno::EACCES | Errno::EPERM) => {
                open_all(&attr::one_shot(stack_bytes, PERIOD_NS, true), tids, &cpus)
            }
            other => other,
        };
        let mut per_thread = opened.map_err(|errno| match errno {
            Errno::EACCES | Errno::EPERM => SamplerError::permission_denied(tids[0]),
            errno => SamplerError::io("perf_event_open", errno),
        })?;
        let page_size = usize::try_from(procfs::page_size()).unwrap_or(4096);
        let mut rings = Vec::with_capacity(cpus.len());
        // The first thread's event on each CPU owns that CPU's ring.
        let Some((&first, _)) = per_thread.iter().next() else {
            return Err(SamplerError::NoSuchProcess(tids[0]));
        };
        let owners = per_thread.remove(&first).unwrap_or_default();
        for owner in owners {
            rings.push(Ring::map_within(owner, RING_PLAN, page_size)?);
        }
        for events in per_thread.values() {
            for (event, ring) in events.iter().zip(&rings) {
                event
                    .set_output(ring.owner())
                    .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_SET_OUTPUT)", e))?;
            }
        }
        let mut shot = OneShot {
            rings,
            events: per_thread,
            samples: HashMap::new(),
            scratch: DecodeScratch::default(),
        };
        shot.arm_missing();
        // The owners' thread is sampled through them; its entry lets `arm_missing` skip it.
        shot.events.insert(first, Vec::new());
        Ok(shot)
    }

    /// Arms, for one more sample, the events of every thread not sampled yet.
    fn arm_missing(&self) {
        for (tid, events) in &self.events {
            if !self.samples.contains_key(tid) {
                for event in events {
                    // ENOENT/ESRCH: the thread exited; it will have no sample.
                    let _ = event.refresh(1);
                }
            }
        }
        for ring in &self.rings {
            // An owner re-armed while its thread is done only costs that thread a sample more.
            let _ = ring.owner().refresh(1);
        }
    }

    /// Reads the rings until every thread is sampled or `deadline` passes.
    fn collect(&mut self, deadline: Instant) {
        loop {
            let lost = self.drain();
            if self.samples.len() >= self.events.len() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if lost {
                self.arm_missing();
            }
            let fds: Vec<BorrowedFd<'_>> = self.rings.iter().map(|r| r.owner().as_fd()).collect();
            let _ = poll::poll(&fds, POLL_INTERVAL.min(deadline - now));
        }
    }

    /// Takes the first sample of each thread out of the rings; true if the kernel lost some.
    fn drain(&mut self) -> bool {
        let format = SampleFormat {
            callchain: false,
            period: false,
            raw: false,
        };
        let mut lost = false;
        let mut sampled = Vec::new();
        for ring in &mut self.rings {
            let mut cursor = ring.cursor();
            let records = cursor.records();
            while let Some(bytes) = records.peek() {
                match record::decode(bytes, format, &mut self.scratch) {
                    Ok(Decoded::Record(Record::Sample(s), _))
                        if s.user_regs_available && !self.samples.contains_key(&s.tid) =>
                    {
                        sampled.push(s.tid);
                        let sample = ThreadSample {
                            tid: s.tid,
                            ip: s.ip,
                            sp: s.sp,
                            bp: s.bp,
                            stack: s.stack.to_vec(),
                        };
                        self.samples.insert(s.tid, sample);
                    }
                    Ok(Decoded::Record(Record::Lost { .. }, _)) => lost = true,
                    _ => {}
                }
                records.advance();
            }
        }
        // A sampled thread's other CPUs' events would only fill the rings.
        for tid in sampled {
            for event in self.events.get(&tid).into_iter().flatten() {
                let _ = event.disable();
            }
        }
        lost
    }
}

impl Drop for OneShot {
    fn drop(&mut self) {
        // Stop the kernel writing before the rings are unmapped and the events closed.
        for event in self.events.values().flatten() {
            let _ = event.disable();
        }
        for ring in &self.rings {
            let _ = ring.owner().disable();
        }
    }
}

/// Opens every thread's event on every CPU, disabled; threads that exited meanwhile are left
/// out. Fails on the first error that is not an exit.
fn open_all(
    attr: &perf_event_attr,
    tids: &[u32],
    cpus: &[u32],
) -> Result<HashMap<u32, Vec<PerfEvent>>, Errno> {
    let mut opened = HashMap::with_capacity(tids.len());
    'threads: for &tid in tids {
        let mut events = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            match PerfEvent::open(attr, tid, cpu) {
                Ok(event) => events.push(event),
                Err(Errno::ESRCH) => continue 'threads,
                Err(errno) => return Err(errno),
            }
        }
        opened.insert(tid, events);
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_threads::{Parked, Spinner};

    #[test]
    fn a_spinning_thread_is_sampled_where_it_spins() {
        let spinner = Spinner::start();
        let started = Instant::now();
        let samples = sample_each(&[spinner.tid], 8192, Duration::from_secs(2)).unwrap();
        let took = started.elapsed();
        assert_eq!(samples.len(), 1, "{samples:?}");
        let sample = &samples[0];
        assert_eq!(sample.tid, spinner.tid);
        assert!(sample.sp != 0 && sample.ip != 0);
        assert!(!sample.stack.is_empty());
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn a_thread_that_never_runs_is_given_up_on_time() {
        let parked = Parked::start();
        let started = Instant::now();
        let samples = sample_each(&[parked.tid], 8192, Duration::from_millis(50)).unwrap();
        assert!(samples.is_empty());
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
