//! Recording where threads wait: the waits of every thread, timed and sampled in the kernel
//! (`timer`) or from switch records (`tracker`), unwound and aggregated by stack; for `wall`
//! CPU-time sampling too, for `mutex` the stacks of the threads that woke the waiters
//! (`sched_waking`), which tell who ended each wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::aggregate::{Observed, View, WaitStacks};
use super::host_ids::HostIds;
use super::period::{Period, SAMPLE_BUDGET};
use super::timer::{Noting, StackCopy};
use super::timing::Timing;
use super::tracker::Wait;
use super::waking::Waking;
use super::SWITCH_STACK_BYTES;
use crate::gostack::{GoStacks, NotFollowed};
use crate::kernel_entry::KernelEntries;
use crate::profile::Meta;
use crate::recording::{
    percent, provenance, Event, Finished, Pipeline, Pump, Recording, Request, Window,
};
use crate::sampler::{monotonic_ns, Record, Sampler, SamplerConfig, SamplerStats, Trigger};
use crate::snapshot::{take_snapshot, SnapshotOptions};
use crate::unwind::{ModuleSet, Registers, StackUnwinder};

/// The longest wait between two drains for `mutex`, whose wakeups and waits come from two
/// samplers and are paired across them: each side keeps what the other has not matched for
/// about this long (see `releases`). 50 wakeups of the agent a second at most, however
/// quiet the target. 5 ms (before) woke it 200 times a second; 50 ms paired fewer releases of
/// redis under redis-benchmark in some runs (noisy, with records lost either way).
const PAIRING_WAIT: Duration = Duration::from_millis(20);

/// The longest wait between two reads of the kernel program's rings, which wake no one: its
/// `stacks` ring holds ~90 ms of copies at the sampling budget.
const KERNEL_RING_WAIT: Duration = Duration::from_millis(25);

pub struct WaitRecording {
    /// The kind's name, for the progress line and the summary.
    name: &'static str,
    /// Context switches of every thread (records), or their mappings, names and exits only
    /// (waits timed in the kernel); `None` once stopped.
    switches: Option<Pump>,
    /// The second sampler: CPU time (`wall`) or, where the kernel's program does not copy
    /// the wakers' stacks, wakeups (`mutex`); `None` otherwise and once stopped.
    second: Option<Pump>,
    second_event: Option<String>,
    /// How to read a wakeup's woken thread (`mutex`).
    waking: Option<Waking>,
    /// The woken threads' ids as the agent numbers them (`mutex`).
    ids: Option<HostIds>,
    /// Switches (and wakeups) per sample.
    period: Period,
    timing: Timing,
    pipeline: Pipeline<WaitStacks>,
    stats: SamplerStats,
    /// `wall` of a Go target: goroutine stacks copied with the on-CPU samples, or why not.
    go: Option<Result<GoStacks, NotFollowed>>,
}

impl WaitRecording {
    /// Starts sampling `request.pid`'s context switches (and its CPU time for a wall view),
    /// and parks the threads that are already waiting.
    pub fn open(name: &'static str, view: View, request: &Request<'_>) -> Result<Self> {
        let pid = request.pid;
        let stack_bytes = request.stack_bytes.min(SWITCH_STACK_BYTES);
        let noting = Noting {
            stack_bytes,
            wakers: view == View::Mutex,
            // Time spent runnable off the CPU is the thread's time too, which wall shows whole.
            runnable: matches!(view, View::Wall { .. }),
        };
        let mut timing = Timing::choose(pid, noting);
        let mut period = Period::default();
        timing.warm_up(&mut period);
        let switches = match open_switches(pid, stack_bytes, view, &timing) {
            Ok(switches) => switches,
            // The program loaded but the kernel refused the per-CPU events (a limit on
            // descriptors, a policy): time the waits from records instead.
            Err(err) if timing.in_kernel() => {
                tracing::debug!("no per-CPU side-band events: {err}");
                timing = Timing::from_records(format!("per-CPU events refused: {err}"), noting);
                open_switches(pid, stack_bytes, view, &timing)?
            }
            Err(err) => return Err(err.into()),
        };
        // Without the kernel's program, `mutex` samples every wakeup of the target's threads.
        let waking = match view {
            View::Mutex if !timing.in_kernel() => Some(Waking::find()?),
            View::Block | View::Mutex | View::Wall { .. } => None,
        };
        let modules = ModuleSet::load(pid, Arc::clone(request.symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        // Per-CPU timers where the kernel filters their ticks: a timer of each thread is armed
        // and cancelled at its every switch (20 % of a switch-heavy pool).
        let target_filter = match view {
            View::Wall { .. } => timing.target_filter()?,
            View::Block | View::Mutex => None,
        };
        // A Go target's on-CPU samples follow its stack switches as the CPU profile's do: the
        // program that copies goroutine stacks is the per-CPU events' filter, or runs with
        // each sample of the target's own events.
        let go = matches!(view, View::Wall { .. })
            .then(|| GoStacks::for_target(&modules, request.program, target_filter.is_some()));
        let go_program = go
            .as_ref()
            .and_then(|go| go.as_ref().ok())
            .map(GoStacks::program_fd);
        let second = match (view, waking) {
            // Time in the kernel is on-CPU time too (a thread in a long read() of a cached
            // file, in a page fault): sampled, as in the CPU profile.
            (View::Wall { .. }, _) => Some(SamplerConfig {
                frequency: request.frequency,
                stack_bytes: request.stack_bytes,
                kernel: true,
                filter: target_filter.map(|keep_target| go_program.unwrap_or(keep_target)),
                on_sample: go_program.filter(|_| target_filter.is_none()),
                ..SamplerConfig::new(pid)
            }),
            (View::Mutex, Some(waking)) => Some(SamplerConfig {
                trigger: Trigger::Tracepoint {
                    id: waking.id,
                    period: 1,
                },
                stack_bytes: request.stack_bytes.min(SWITCH_STACK_BYTES),
                ..SamplerConfig::new(pid)
            }),
            _ => None,
        }
        .map(|config| Sampler::open(&config))
        .transpose()?;
        let mut second = second.map(Pump::new);
        let ids = match (view, &mut second) {
            (View::Mutex, Some(wakeups)) => {
                let mut ids = HostIds::find()?;
                ids.start(wakeups.sampler_mut());
                Some(ids)
            }
            _ => None,
        };
        let second_event = match view {
            View::Mutex => Some("sched_waking".to_owned()),
            View::Block | View::Wall { .. } => second
                .as_ref()
                .map(|s| s.sampler().event_kind().to_string()),
        };
        let stacks = match view {
            View::Wall { .. } => {
                WaitStacks::new(view).collapsing_kernel_chains(KernelEntries::load())
            }
            View::Block | View::Mutex => WaitStacks::new(view),
        };
        let mut unwinder = StackUnwinder::new(modules);
        // What the target mapped between reading its modules and the events' start is in no
        // mmap record.
        unwinder.refresh_modules();
        let pipeline =
            Pipeline::start(pid, unwinder, stacks).context("cannot start the unwinder thread")?;
        park_waiting_threads(pid, &mut timing);
        Ok(WaitRecording {
            name,
            switches: Some(Pump::new(switches)),
            second,
            second_event,
            waking,
            ids,
            period,
            timing,
            pipeline,
            stats: SamplerStats::default(),
            go,
        })
    }
}

/// The sampler of the target's switches: with waits timed in the kernel (whose program copies
/// the sampled waits' stacks), only the mappings, names and exits of its threads, from an event
/// per CPU; else an event per thread counting its switches, with a record of each.
fn open_switches(
    pid: u32,
    stack_bytes: u32,
    view: View,
    timing: &Timing,
) -> Result<Sampler, crate::sampler::SamplerError> {
    let trigger = if timing.in_kernel() {
        Trigger::SideBand
    } else {
        Trigger::ContextSwitches { period: 1 }
    };
    // A second sampler opened next needs rings too: wall's CPU time, and mutex's wakeups
    // where the kernel's program does not copy the wakers' stacks.
    let budget_share = match view {
        View::Block => 1,
        View::Mutex if timing.in_kernel() => 1,
        View::Mutex | View::Wall { .. } => 2,
    };
    Sampler::open(&SamplerConfig {
        trigger,
        switch_records: !timing.in_kernel(),
        stack_bytes,
        budget_share,
        ..SamplerConfig::new(pid)
    })
}

/// Parks every thread blocked in a system call now, with its stack (read without stopping
/// it), as waiting since now: a thread that waits through the whole window leaves no switch
/// to sample.
fn park_waiting_threads(pid: u32, timing: &mut Timing) {
    let since = monotonic_ns();
    // Blocked threads only: a running thread is not waiting.
    let options = SnapshotOptions {
        nonblocking: true,
        sample_running: false,
        ..SnapshotOptions::default()
    };
    match take_snapshot(pid, &options) {
        Ok(snapshot) => {
            for capture in snapshot.stacks {
                let regs = Registers {
                    ip: capture.regs.ip,
                    sp: capture.regs.sp,
                    bp: capture.regs.bp,
                };
                timing.park(capture.tid, regs, capture.stack, since);
            }
        }
        Err(err) => tracing::debug!("no snapshot of the threads already waiting: {err}"),
    }
}

impl WaitRecording {
    /// Samples 1 switch in N when the target switches faster than the budget. The period
    /// reaches the events of the threads the sampler attached, not the copies the kernel made
    /// for threads created since (they keep their creator's period): so a sample is not
    /// weighted by N but by the switches its thread made since its last sample, which every
    /// switch's record tells exactly. Wakeups sampled by records have no such record: every
    /// one is sampled. In the kernel, each wait is drawn with probability 1/N as it begins.
    fn adapt_period(&mut self) {
        let Some(period) = self.period.redraw() else {
            return;
        };
        if self.timing.in_kernel() {
            self.timing.set_period(period);
        } else if let Some(switches) = &mut self.switches {
            switches.sampler_mut().set_period(period);
        }
    }
}

impl Recording for WaitRecording {
    fn label(&self) -> String {
        match &self.second_event {
            Some(second) => format!("context-switches + {second}"),
            None => "context-switches".to_owned(),
        }
    }

    fn pump(&mut self, timeout: Duration) {
        let (pipeline, timing) = (&self.pipeline, &mut self.timing);
        // With two samplers, both are waited for at once, then both drained without waiting.
        // `mutex` pairs records of the two, read in turn: a wakeup read after the switches of
        // its drain meets its wait among those kept, a drain's worth per thread (see
        // `releases`), so its drains are at most PAIRING_WAIT apart.
        let timeout = if self.waking.is_some() {
            timeout.min(PAIRING_WAIT)
        } else if timing.in_kernel() {
            timeout.min(KERNEL_RING_WAIT)
        } else {
            timeout
        };
        // Kernel-timed waits are waited for here too, so that the ends are read between the
        // wait and the drain (below).
        let mut samplers: Vec<&mut Sampler> = (self.switches.iter_mut())
            .chain(self.second.iter_mut())
            .map(Pump::sampler_mut)
            .collect();
        let wait = if samplers.len() > 1 || (timing.in_kernel() && !samplers.is_empty()) {
            if let Err(err) = Sampler::wait_any(&mut samplers, timeout) {
                tracing::debug!("wait for samples: {err}");
                std::thread::sleep(timeout);
            }
            Duration::ZERO
        } else {
            timeout
        };
        let period = &mut self.period;
        // Kernel-timed waits: the ends first, then the samples. A sample is written before its
        // end, so every end read now has its sample in the rings, read next; only the waits
        // still open when the rings are read are held until a later pump.
        // Side-band records first (a departure's stack may be in a library just mapped); the
        // exits they report are applied once the kernel's waits read now are paired (a thread
        // whose last wait ended just before it exited keeps that wait).
        let mut exited = Vec::new();
        if let Some(switches) = &mut self.switches {
            switches.pump(wait, &mut |record| {
                forward_switch(&record, timing, period, pipeline, &mut exited);
            });
        }
        timing.collect(
            period,
            |wait| send_wait(pipeline, wait),
            |copy| send_woke(pipeline, copy),
        );
        apply_exits(&exited, timing, pipeline);
        let mut waking = self.waking.as_ref().zip(self.ids.as_mut());
        let mut go = self.go.as_mut().and_then(|go| go.as_mut().ok());
        if let Some(second) = &mut self.second {
            second.pump(wait, &mut |record| {
                forward_second(record, &mut waking, &mut go, pipeline)
            });
            if let Some(ids) = &mut self.ids {
                ids.review(second.sampler_mut(), |event| pipeline.send(event));
            }
        }
        pipeline.flush();
        self.adapt_period();
    }

    fn figures(&self) -> String {
        let counters = self.pipeline.counters();
        format!(
            "{} samples, {} lost",
            counters.samples.load(Ordering::Relaxed),
            counters.lost.load(Ordering::Relaxed),
        )
    }

    fn stop(&mut self) {
        let (pipeline, timing, period) = (&self.pipeline, &mut self.timing, &mut self.period);
        let mut waking = self.waking.as_ref().zip(self.ids.as_mut());
        let mut go = self.go.as_mut().and_then(|go| go.as_mut().ok());
        if let Some(mut second) = self.second.take() {
            second.drain(&mut |record| forward_second(record, &mut waking, &mut go, pipeline));
            if let Some(ids) = &mut self.ids {
                ids.finish(second.sampler_mut(), |event| pipeline.send(event));
            }
        }
        let Some(mut switches) = self.switches.take() else {
            return;
        };
        let mut exited = Vec::new();
        switches
            .drain(&mut |record| forward_switch(&record, timing, period, pipeline, &mut exited));
        timing.finish(
            monotonic_ns(),
            |wait| send_wait(pipeline, wait),
            |copy| send_woke(pipeline, copy),
        );
        apply_exits(&exited, timing, pipeline);
        self.stats = switches.sampler().stats();
    }

    fn finish(self: Box<Self>, window: &Window) -> Result<Finished> {
        let this = *self;
        let (stacks, unwinder) = this.pipeline.finish()?;
        let mut comments = comments(
            &this.stats,
            &this.timing,
            &stacks,
            window,
            &this.second_event,
            this.ids.as_ref().map_or(0, |ids| ids.unidentified),
            unwinder.completed(),
        );
        let resumed = unwinder.resumed();
        comments.extend((this.go.as_ref()).and_then(|go| crate::gostack::comment(go, resumed)));
        let meta = Meta {
            start: window.start,
            duration: window.duration,
            comments,
        };
        let summary = summary(this.name, &stacks, window);
        Ok(Finished {
            profile: stacks.build(unwinder.modules(), &meta),
            summary,
            title: format!("rprof-agent: PID {}, {}", window.pid, this.name),
            has_samples: stacks.samples() > 0,
        })
    }
}

/// A record of the second sampler: a CPU sample (`wall`: on the CPU, its stack as for a CPU
/// profile, with the goroutine stack copied with it) or a wakeup (`mutex`: the waker's stack,
/// and whom it woke).
fn forward_second(
    record: Record<'_>,
    waking: &mut Option<(&Waking, &mut HostIds)>,
    go: &mut Option<&mut GoStacks>,
    pipeline: &Pipeline<WaitStacks>,
) {
    match (record, waking.as_mut()) {
        (Record::Sample(sample), None) => {
            let switched = go
                .as_deref_mut()
                .map_or_else(Vec::new, |go| go.take(sample.tid, sample.time));
            pipeline.send(Event::sample(&sample, Observed::OnCpu).with_switched(switched))
        }
        (Record::Sample(sample), Some((waking, ids))) => {
            if ids.learn(&sample, waking.waker(sample.raw)) {
                return;
            }
            let Some(host) = waking.wakee(sample.raw) else {
                return;
            };
            // Every wakeup is sampled: each stands for one.
            let woke = Observed::Woke {
                wakee: host,
                time: sample.time,
                weight: 1,
            };
            if let Some(event) = ids.translate(host, Event::sample(&sample, woke)) {
                pipeline.send(event);
            }
        }
        (Record::Lost { count }, _) => pipeline.send(Event::Lost(count)),
        // The switch sampler reports the same mappings and names.
        _ => {}
    }
}

/// A record of the context-switch sampler: waits it completes go to the unwinder, side-band
/// records too. With waits timed in the kernel, exits are left in `exited` for later
/// (`apply_exits`).
fn forward_switch(
    record: &Record<'_>,
    timing: &mut Timing,
    period: &mut Period,
    pipeline: &Pipeline<WaitStacks>,
    exited: &mut Vec<u32>,
) {
    if let (Record::Exit { tid, .. }, true) = (record, timing.in_kernel()) {
        exited.push(*tid);
        return;
    }
    timing.record(record, period, |wait| send_wait(pipeline, wait));
    if !matches!(record, Record::Sample(_) | Record::Switch { .. }) {
        Event::side_band(record, |event| pipeline.send(event));
    }
}

/// Threads that exited (waits timed in the kernel): they wait no more, and the unwinder
/// forgets them.
fn apply_exits(exited: &[u32], timing: &mut Timing, pipeline: &Pipeline<WaitStacks>) {
    for &tid in exited {
        timing.exited(tid);
        pipeline.send(Event::ThreadExited { tid });
    }
}

fn send_wait(pipeline: &Pipeline<WaitStacks>, wait: Wait) {
    pipeline.send(Event::Sample {
        tid: wait.tid,
        regs: wait.regs,
        stack: wait.stack,
        kernel: Vec::new(),
        switched: Vec::new(),
        extra: Observed::OffCpu(wait.off_cpu),
    });
}

/// The stack of a thread that woke one away on a sampled wait (kernel timing, `mutex`).
fn send_woke(pipeline: &Pipeline<WaitStacks>, copy: StackCopy) {
    let Some(wakee) = copy.woke else {
        return;
    };
    pipeline.send(Event::Sample {
        tid: copy.tid,
        regs: copy.regs,
        stack: copy.stack,
        kernel: Vec::new(),
        switched: Vec::new(),
        // The wait it ended stands for as many waits as it was drawn for.
        extra: Observed::Woke {
            wakee,
            time: copy.time,
            weight: 1,
        },
    });
}

fn comments(
    stats: &SamplerStats,
    timing: &Timing,
    stacks: &WaitStacks,
    window: &Window,
    second_event: &Option<String>,
    unidentified: u64,
    completed: u64,
) -> Vec<String> {
    let mut comments = vec![provenance(window)];
    comments.extend(timing.comments(SAMPLE_BUDGET));
    match second_event.as_deref() {
        Some("sched_waking") if timing.in_kernel() => comments.push(format!(
            "releases: the stack of the thread of the target that woke each sampled wait, \
             copied at sched:sched_waking by a BPF program, paired with the \
             wait; wakeups that ended waits not on a lock: {}",
            stacks.not_on_lock()
        )),
        Some("sched_waking") => comments.push(format!(
            "releases: sched_waking samples (the waker's stack), paired with the lock wait each \
             ended; wakeups that ended other waits: {}, of threads never identified (another \
             process's, or in a container a thread that never left the CPU while its id was \
             learned): {unidentified}",
            stacks.not_on_lock()
        )),
        Some(cpu) => comments.push(format!("on-CPU: {cpu} samples")),
        None => {}
    }
    let runnable = if stacks.runnable_ns > 0 {
        format!(
            ", runnable time (preempted, waiting for a CPU) {:.3}s",
            stacks.runnable_ns as f64 / 1e9
        )
    } else {
        String::new()
    };
    comments.push(format!(
        "waits: {}, off-CPU time {:.3}s{runnable}; waits not on synchronization skipped: {}; \
         lost records: {}; truncated stacks: {}; stacks deeper than their copy completed from \
         the thread's live stack: {completed}",
        stacks.samples(),
        stacks.off_cpu_ns as f64 / 1e9,
        stacks.not_synchronization,
        stacks.lost(),
        stacks.truncated(),
    ));
    comments.push(if timing.in_kernel() {
        "threads: all (the kernel's program sees every switch); mappings, names and exits from \
         one event per CPU"
            .to_owned()
    } else {
        format!(
            "threads: {} attached, {} inherited",
            stats.threads_attached, stats.threads_inherited
        )
    });
    comments.push(stats.drops());
    comments
}

fn summary(name: &str, stacks: &WaitStacks, window: &Window) -> String {
    let why = window.outcome.note();
    format!(
        "{} {name} samples over {:.1}s{why}, {:.3}s off CPU, {} lost, {} truncated stacks \
         ({:.1}%), {} distinct stacks",
        stacks.samples(),
        window.duration.as_secs_f64(),
        stacks.off_cpu_ns as f64 / 1e9,
        stacks.lost(),
        stacks.truncated(),
        percent(stacks.truncated(), stacks.samples()),
        stacks.distinct_stacks(),
    )
}
