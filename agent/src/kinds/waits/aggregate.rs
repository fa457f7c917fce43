//! The aggregate of the waiting kinds: off-CPU intervals (and, for `wall`, on-CPU samples) by
//! stack, labelled with what each wait is for.

use rprof_proto::Profile;

use super::classify::{Classifier, Wait};
use super::releases::{EndedWait, Release, Releases, Wakeup};
use super::tracker::OffCpu;
use crate::kallsyms::{KernelNames, KernelSymbols};
use crate::kernel_entry::KernelEntries;
use crate::profile::{Meta, PseudoFrame, Shape, StackAggregate, StackSample};
use crate::recording::{Aggregate, Unwound};
use crate::unwind::{ModuleSet, UnwindEnd};

/// What the drain saw a thread do.
#[derive(Debug, Clone, Copy)]
pub enum Observed {
    /// Running: a CPU-time sample (`wall` only).
    OnCpu,
    /// Away from the CPU for a while.
    OffCpu(OffCpu),
    /// Woke thread `wakee` at `time` (`mutex` only); the sample stands for `weight` wakeups.
    Woke { wakee: u32, time: u64, weight: u64 },
}

/// Which profile the waits go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Go's block profile: waits on synchronization only, `contentions/count` and
    /// `delay/nanoseconds`, label `wait`.
    Block,
    /// fgprof's wall-clock profile: every thread's time on and off the CPU, label `state`
    /// (`on-cpu`, `off-cpu` with `wait`, or `runnable`: preempted, waiting for a CPU).
    Wall {
        /// Nanoseconds of CPU time one CPU sample stands for.
        cpu_period: i64,
    },
    /// Go's mutex profile: the stacks that released a lock others waited for, weighted by
    /// how long they had waited; `contentions/count`, `delay/nanoseconds`.
    Mutex,
}

/// A waker's stack, kept until its wakeup is paired with the wait it ended.
struct WakerStack {
    tid: u32,
    user: Box<[u64]>,
    truncated: bool,
}

/// Waits (and CPU samples) by stack.
pub struct WaitStacks {
    view: View,
    stacks: StackAggregate,
    classifier: Classifier,
    /// Waits not on synchronization (I/O, sleep...), left out of a block profile.
    pub not_synchronization: u64,
    /// Total off-CPU nanoseconds counted (weighted); for `mutex`, the delay attributed.
    pub off_cpu_ns: u64,
    /// Total nanoseconds threads spent runnable off the CPU, counted (weighted; `wall`).
    pub runnable_ns: u64,
    lost: u64,
    releases: Releases<WakerStack>,
    /// `wall` with time in the kernel sampled: each kernel call chain is kept as one frame,
    /// the system call (or `[kernel]`), as in the CPU profile.
    collapse: Option<KernelEntries>,
}

impl WaitStacks {
    pub fn new(view: View) -> Self {
        WaitStacks {
            view,
            stacks: StackAggregate::new(true),
            classifier: Classifier::default(),
            not_synchronization: 0,
            off_cpu_ns: 0,
            runnable_ns: 0,
            lost: 0,
            releases: Releases::default(),
            collapse: None,
        }
    }

    /// Keeps one frame of each on-CPU sample's kernel call chain, found with `entries`.
    pub fn collapsing_kernel_chains(mut self, entries: KernelEntries) -> Self {
        self.collapse = Some(entries);
        self
    }

    /// Wakeups that ended waits not on a lock (`mutex`).
    pub fn not_on_lock(&self) -> u64 {
        self.releases.not_on_lock
    }

    pub fn samples(&self) -> u64 {
        self.stacks.samples()
    }

    pub fn truncated(&self) -> u64 {
        self.stacks.truncated()
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn distinct_stacks(&self) -> usize {
        self.stacks.distinct_stacks()
    }

    pub fn build(&self, modules: &ModuleSet, meta: &Meta) -> Profile {
        let shape = match self.view {
            View::Block | View::Mutex => Shape {
                sample_types: &[("contentions", "count"), ("delay", "nanoseconds")],
                period_type: ("contentions", "count"),
                period: 1,
                default_sample_type: None,
            },
            View::Wall { cpu_period } => Shape {
                sample_types: &[("samples", "count"), ("wall", "nanoseconds")],
                period_type: ("wall", "nanoseconds"),
                period: cpu_period,
                default_sample_type: Some("wall"),
            },
        };
        let kernel_names = self.collapse.as_ref().map(|_| {
            KernelNames::Entries(KernelSymbols::load_for(&self.stacks.kernel_addresses()))
        });
        self.stacks
            .build(modules, kernel_names.as_ref(), &shape, meta)
    }

    fn add_off_cpu(&mut self, sample: &Unwound<'_>, off_cpu: OffCpu) {
        if off_cpu.runnable {
            self.add_runnable(sample, off_cpu);
            return;
        }
        let wait = self.classifier.classify(sample.modules, sample.user);
        if self.view == View::Mutex {
            let ended = EndedWait {
                since: off_cpu.since,
                until: off_cpu.since.saturating_add(off_cpu.nanoseconds),
                weight: off_cpu.weight,
                on_lock: wait == Wait::Lock,
            };
            for release in self.releases.wait_ended(sample.tid, ended) {
                self.add_release(release);
            }
            return;
        }
        if self.view == View::Block && !wait.is_synchronization() {
            self.not_synchronization += 1;
            return;
        }
        let weight = i64::try_from(off_cpu.weight).unwrap_or(i64::MAX);
        let nanoseconds = i64::try_from(off_cpu.nanoseconds).unwrap_or(i64::MAX);
        let total = weight.saturating_mul(nanoseconds);
        self.off_cpu_ns = self.off_cpu_ns.saturating_add(total.unsigned_abs());
        let labels: &[(&str, &str)] = match self.view {
            View::Wall { .. } => &[("state", "off-cpu"), ("wait", wait.label())],
            View::Block | View::Mutex => &[("wait", wait.label())],
        };
        self.stacks
            .add(&sample.stack_sample(labels), &[weight, total]);
    }
}

impl WaitStacks {
    /// Time the thread spent preempted, waiting for a CPU: no wait, but the thread's time, in
    /// a wall-clock profile only (label `state` = `runnable`).
    fn add_runnable(&mut self, sample: &Unwound<'_>, off_cpu: OffCpu) {
        if !matches!(self.view, View::Wall { .. }) {
            return;
        }
        let weight = i64::try_from(off_cpu.weight).unwrap_or(i64::MAX);
        let nanoseconds = i64::try_from(off_cpu.nanoseconds).unwrap_or(i64::MAX);
        let total = weight.saturating_mul(nanoseconds);
        self.runnable_ns = self.runnable_ns.saturating_add(total.unsigned_abs());
        let labels: &[(&str, &str)] = &[("state", "runnable")];
        self.stacks
            .add(&sample.stack_sample(labels), &[weight, total]);
    }

    fn add_woke(&mut self, sample: &Unwound<'_>, wakee: u32, time: u64, weight: u64) {
        let stack = WakerStack {
            tid: sample.tid,
            user: sample.user.into(),
            truncated: sample.end == UnwindEnd::Truncated,
        };
        let wakeup = Wakeup {
            time,
            weight,
            stack,
        };
        if let Some(release) = self.releases.woke(wakee, wakeup) {
            self.add_release(release);
        }
    }

    /// A release paired with the wait it ended: the delay, on the releaser's stack.
    fn add_release(&mut self, release: Release<WakerStack>) {
        let weight = i64::try_from(release.weight).unwrap_or(i64::MAX);
        let delay = i64::try_from(release.delay)
            .unwrap_or(i64::MAX)
            .saturating_mul(weight);
        self.off_cpu_ns = self.off_cpu_ns.saturating_add(delay.unsigned_abs());
        let stack = &release.stack;
        let sample = StackSample {
            tid: stack.tid,
            kernel: &[],
            user: &stack.user,
            root: stack.truncated.then_some(PseudoFrame::Truncated),
            labels: &[],
        };
        self.stacks.add(&sample, &[weight, delay]);
    }
}

impl Aggregate for WaitStacks {
    type Extra = Observed;

    fn add(&mut self, sample: Unwound<'_>, observed: Observed) {
        match (observed, self.view) {
            (Observed::OffCpu(off_cpu), _) => self.add_off_cpu(&sample, off_cpu),
            (Observed::OnCpu, View::Wall { cpu_period }) => {
                let labels: &[(&str, &str)] = &[("state", "on-cpu")];
                let mut stack = sample.stack_sample(labels);
                let collapsed = KernelEntries::collapsed(self.collapse.as_ref(), stack.kernel);
                if let Some(one) = &collapsed {
                    stack.kernel = one;
                }
                self.stacks.add(&stack, &[1, cpu_period]);
            }
            (
                Observed::Woke {
                    wakee,
                    time,
                    weight,
                },
                View::Mutex,
            ) => {
                self.add_woke(&sample, wakee, time, weight);
            }
            (Observed::OnCpu, _) | (Observed::Woke { .. }, _) => {}
        }
    }

    fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    fn stacks(&mut self) -> &mut StackAggregate {
        &mut self.stacks
    }
}
