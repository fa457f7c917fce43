//! The unwinding stage: a thread of its own that turns raw samples into aggregated stacks (of
//! any kind: see [`Aggregate`]), so the thread draining the ring buffers never falls behind
//! the kernel.
//!
//! Events cross to it in batches, one per drain (or per [`BATCH_BYTES`]): handing over each
//! sample would wake the unwinder thread once per sample, and on a busy machine every wakeup
//! takes a CPU from the target. The thread runs as `SCHED_BATCH`: woken by the drain, it does
//! not preempt it (nor, on the target's CPU, the target), and runs once the drain sleeps again
//! or at the next tick.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::aggregate::{Aggregate, Unwound};
use crate::sampler::{Record, Sample};
use crate::unwind::{Registers, StackMemory, StackUnwinder, SwitchedStack, UnwindEnd};
use rprof_symbolizer::maps::MapEntry;

/// Batches in flight between the drain and the unwinder; past this the drain blocks and the
/// kernel's ring buffer absorbs (and counts) the overflow.
const QUEUE_DEPTH: usize = 8;
/// A batch is handed over once its stacks hold this much, even mid-drain: bounds what is held
/// (8 batches of 4 MiB at most, as the 1024 samples in flight before batching). A drain woken
/// by a half-full 8 MiB ring hands its 4 MiB over at once.
const BATCH_BYTES: usize = 4 << 20;

/// What the drain hands to the unwinder; `X` is what the kind attaches to each sample.
pub enum Event<X> {
    Sample {
        tid: u32,
        regs: Registers,
        stack: Vec<u8>,
        kernel: Vec<u64>,
        /// The stacks the thread had switched away from when sampled (Go's goroutine under
        /// its system stack), copied with the sample, innermost first.
        switched: Vec<SwitchedStack>,
        extra: X,
    },
    Lost(u64),
    ThreadName {
        tid: u32,
        name: String,
    },
    /// The target mapped this executable file (or its vdso), as a perf record described it:
    /// known to the unwinder from this point of the event stream on.
    CodeMappedAt(MapEntry),
    /// The target exec()ed: the modules it had are gone (the new program's mappings follow).
    Exec,
    /// Thread `tid` was created by thread `creator`.
    ThreadCreated {
        tid: u32,
        creator: u32,
    },
    ThreadExited {
        tid: u32,
    },
    /// Something the kind's aggregate needs in stream order that has no stack to unwind (a
    /// free, a return value, a clock tick): handed to [`Aggregate::note`].
    Note(X),
}

impl<X> Event<X> {
    /// The events a side-band record means to the unwinder (samples are [`Event::sample`];
    /// a profile that tracks thread creation handles `Fork` itself). An exec comes before the
    /// new program's name and mappings, which the kernel reports after it.
    pub fn side_band(record: &Record<'_>, mut send: impl FnMut(Self)) {
        match *record {
            Record::Lost { count } => send(Event::Lost(count)),
            Record::Comm {
                tid, name, exec, ..
            } => {
                if exec {
                    send(Event::Exec);
                }
                send(Event::ThreadName {
                    tid,
                    name: name.to_string(),
                });
            }
            Record::Mmap {
                exec: true,
                addr,
                len,
                pgoff,
                inode,
                filename,
                ..
            } => {
                if let Some(event) = Event::code_mapped(addr, len, pgoff, inode, filename) {
                    send(event);
                }
            }
            Record::Exit { tid, .. } => send(Event::ThreadExited { tid }),
            Record::Sample(_)
            | Record::Mmap { .. }
            | Record::Fork { .. }
            | Record::Switch { .. } => {}
        }
    }

    /// The event for a record of an executable mapping of the target: the mapping itself for a
    /// file or the vdso, None for anonymous code (JIT), which has no module to load.
    fn code_mapped(addr: u64, len: u64, pgoff: u64, inode: u64, filename: &str) -> Option<Self> {
        let (path, deleted) = match filename.strip_suffix(" (deleted)") {
            Some(path) => (path, true),
            None => (filename, false),
        };
        if !path.starts_with('/') && path != "[vdso]" {
            return None;
        }
        Some(Event::CodeMappedAt(MapEntry {
            start: addr,
            end: addr.saturating_add(len),
            read: true,
            write: false,
            exec: true,
            offset: pgoff,
            dev_major: 0,
            dev_minor: 0,
            inode,
            path: path.to_owned(),
            deleted,
        }))
    }

    /// A sample, copied out of the ring buffer, with what the kind attaches to it. Without user
    /// registers (a sample taken in a kernel-only context) the registers are zero: kernel
    /// frames only.
    pub fn sample(sample: &Sample<'_>, extra: X) -> Self {
        let regs = if sample.user_regs_available {
            Registers {
                ip: sample.ip,
                sp: sample.sp,
                bp: sample.bp,
            }
        } else {
            Registers {
                ip: 0,
                sp: 0,
                bp: 0,
            }
        };
        Event::Sample {
            tid: sample.tid,
            regs,
            stack: sample.stack.to_vec(),
            kernel: sample.kernel_callchain.to_vec(),
            switched: Vec::new(),
            extra,
        }
    }

    /// This sample with the stacks its thread had switched away from.
    pub fn with_switched(mut self, stacks: Vec<SwitchedStack>) -> Self {
        if let Event::Sample { switched, .. } = &mut self {
            *switched = stacks;
        }
        self
    }
}

/// Counters the progress line reads while the unwinder runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub samples: AtomicU64,
    pub lost: AtomicU64,
    pub truncated: AtomicU64,
}

/// The running unwinder thread, aggregating into an `A`.
pub struct Pipeline<A: Aggregate> {
    sender: Option<SyncSender<Vec<Event<A::Extra>>>>,
    /// Events not handed over yet, and the stack bytes they hold.
    batch: RefCell<(Vec<Event<A::Extra>>, usize)>,
    handle: Option<JoinHandle<(A, StackUnwinder)>>,
    counters: Arc<Counters>,
    /// Batches handed over and not yet taken by the unwinder.
    in_flight: Arc<AtomicUsize>,
    /// A full batch waits for room rather than blocking the drain (see [`Pipeline::patient`]).
    patient: bool,
}

impl<A: Aggregate> Pipeline<A> {
    pub fn start(pid: u32, unwinder: StackUnwinder, aggregate: A) -> std::io::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
        let counters = Arc::new(Counters::default());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stage = Stage::new(pid, unwinder, aggregate, counters.clone());
        let taken = Arc::clone(&in_flight);
        let handle = std::thread::Builder::new()
            .name("rprof-unwind".into())
            .spawn(move || stage.run(receiver, &taken))?;
        Ok(Pipeline {
            sender: Some(sender),
            batch: RefCell::new((Vec::new(), 0)),
            handle: Some(handle),
            counters,
            in_flight,
            patient: false,
        })
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// A pipeline whose full batches wait for the unwinder to have room instead of blocking
    /// the drain: for a drain that must keep its timing and stops by itself when there is no
    /// room ([`Pipeline::has_room`]), so batches stay bounded.
    pub fn patient(mut self) -> Self {
        self.patient = true;
        self
    }

    /// Queues `event` for the unwinder; it is handed over with its batch.
    pub fn send(&self, event: Event<A::Extra>) {
        let full = {
            let mut batch = self.batch.borrow_mut();
            if let Event::Sample {
                stack, switched, ..
            } = &event
            {
                batch.1 += stack.len() + switched.iter().map(|s| s.stack.len()).sum::<usize>();
            }
            batch.0.push(event);
            batch.1 >= BATCH_BYTES
        };
        if full && (!self.patient || self.has_room()) {
            self.flush();
        }
    }

    /// [`Pipeline::flush`] if that would not block (a patient pipeline's end of drain).
    pub fn flush_if_room(&self) {
        if self.has_room() {
            self.flush();
        }
    }

    /// Whether the unwinder can take another batch now: a drain that must not block stops
    /// when it cannot (the kernel's rings then absorb, and count, what does not fit).
    pub fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) + 1 < QUEUE_DEPTH
    }

    /// Hands the events queued so far to the unwinder: at the end of each drain.
    pub fn flush(&self) {
        let events = std::mem::take(&mut *self.batch.borrow_mut()).0;
        if events.is_empty() {
            return;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(sender) = &self.sender {
            // Fails only if the unwinder thread died; its panic surfaces in finish().
            let _ = sender.send(events);
        }
    }

    /// Waits for every queued sample to be unwound and returns the aggregate.
    pub fn finish(mut self) -> anyhow::Result<(A, StackUnwinder)> {
        self.flush();
        self.sender = None;
        let handle = self
            .handle
            .take()
            .ok_or_else(|| anyhow::anyhow!("unwinder already finished"))?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("internal error: the unwinder thread panicked"))
    }
}

/// One sample as the unwinder takes it.
struct Sampled<'a> {
    tid: u32,
    regs: Registers,
    stack: &'a [u8],
    kernel: &'a [u64],
    switched: &'a [SwitchedStack],
}

struct Stage<A> {
    pid: u32,
    unwinder: StackUnwinder,
    profile: A,
    counters: Arc<Counters>,
    /// Threads whose name the aggregate has: the others' is read from /proc on first sample.
    named: HashSet<u32>,
    frames: Vec<u64>,
}

impl<A: Aggregate> Stage<A> {
    fn new(pid: u32, unwinder: StackUnwinder, profile: A, counters: Arc<Counters>) -> Self {
        Stage {
            pid,
            unwinder,
            profile,
            counters,
            named: HashSet::new(),
            frames: Vec::with_capacity(256),
        }
    }

    fn run(
        mut self,
        batches: Receiver<Vec<Event<A::Extra>>>,
        in_flight: &AtomicUsize,
    ) -> (A, StackUnwinder) {
        batch_scheduling();
        for batch in batches {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            for event in batch {
                self.handle(event);
            }
        }
        (self.profile, self.unwinder)
    }

    fn handle(&mut self, event: Event<A::Extra>) {
        match event {
            Event::Sample {
                tid,
                regs,
                stack,
                kernel,
                switched,
                extra,
            } => {
                let sampled = Sampled {
                    tid,
                    regs,
                    stack: &stack,
                    kernel: &kernel,
                    switched: &switched,
                };
                self.sample(sampled, extra)
            }
            Event::Lost(count) => {
                self.profile.add_lost(count);
                self.counters.lost.fetch_add(count, Ordering::Relaxed);
            }
            Event::ThreadName { tid, name } => {
                self.named.insert(tid);
                self.profile.stacks().names().set(tid, &name);
            }
            Event::CodeMappedAt(mapping) => {
                // The file could not be loaded from the record (gone, unreadable): the maps
                // may still tell, now and then.
                if !self.unwinder.code_mapped(&mapping) && self.unwinder.modules().may_refresh() {
                    self.unwinder.refresh_modules();
                }
            }
            Event::Exec => self.unwinder.exec(),
            Event::ThreadCreated { tid, creator } => {
                // A new thread under an id seen before: its name is the creator's, or unknown.
                if self.profile.stacks().names().inherit(tid, creator) {
                    self.named.insert(tid);
                } else {
                    self.named.remove(&tid);
                }
            }
            Event::ThreadExited { tid } => {
                self.named.remove(&tid);
                self.profile.stacks().names().forget(tid);
            }
            Event::Note(extra) => self.profile.note(extra),
        }
    }

    fn sample(&mut self, sampled: Sampled<'_>, extra: A::Extra) {
        let Sampled {
            tid,
            regs,
            stack,
            kernel,
            switched,
        } = sampled;
        if self.named.insert(tid) {
            // Read after the target exited, the name could be another program's.
            let name =
                thread_name(self.pid, tid).filter(|_| self.unwinder.modules().target_alive());
            if let Some(name) = name {
                self.profile.stacks().names().set(tid, &name);
            }
        }
        let end = if regs.ip == 0 {
            // No user registers (a sample taken in a kernel-only context): kernel frames only.
            self.frames.clear();
            UnwindEnd::Complete
        } else {
            let stack = StackMemory::new(regs.sp, stack);
            self.unwinder
                .unwind(regs, &stack, switched, &mut self.frames)
        };
        let unwound = Unwound {
            tid,
            kernel,
            user: &self.frames,
            end,
            modules: self.unwinder.modules(),
        };
        self.profile.add(unwound, extra);
        self.counters.samples.fetch_add(1, Ordering::Relaxed);
        if end == UnwindEnd::Truncated {
            self.counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A thread's current name, read once when its first sample arrives (a thread renamed later
/// reports itself through a COMM record).
pub fn thread_name(pid: u32, tid: u32) -> Option<String> {
    let path = format!("/proc/{pid}/task/{tid}/comm");
    let name = rprof_symbolizer::proc_dir::read_text_lossy(std::path::Path::new(&path), 64).ok()?;
    Some(name.trim_end_matches('\n').chars().take(64).collect())
}

/// Puts the calling thread under `SCHED_BATCH` (same priority, no wakeup preemption). Allowed
/// to any thread; where it is refused the thread stays as it was.
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!("SCHED_BATCH refused: {}", std::io::Error::last_os_error());
    }
}
