//! The aggregate of the waiting kinds: off-CPU intervals (and, for `wall`, on-CPU samples) by
//! stack, labelled with what each wait is for.

use rprof_proto::Profile;

use super::classify::Classifier;
use super::tracker::OffCpu;
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
}

/// Which profile the waits go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Go's block profile: waits on synchronization only, `contentions/count` and
    /// `delay/nanoseconds`, label `wait`.
    Block,
    /// fgprof's wall-clock profile: every thread's time on and off the CPU, label `state`
    /// (and `wait` off the CPU).
    Wall {
        /// Nanoseconds of CPU time one CPU sample stands for.
        cpu_period: i64,
    },
}

/// Waits (and CPU samples) by stack.
pub struct WaitStacks {
    view: View,
    stacks: StackAggregate,
    classifier: Classifier,
    /// Waits not on synchronization (I/O, sleep...), left out of a block profile.
    pub not_synchronization: u64,
    /// Total off-CPU nanoseconds counted (weighted).
    pub off_cpu_ns: u64,
    lost: u64,
}

impl WaitStacks {
    pub fn new(view: View) -> Self {
        WaitStacks {
            view,
            stacks: StackAggregate::new(true),
            classifier: Classifier::default(),
            not_synchronization: 0,
            off_cpu_ns: 0,
            lost: 0,
        }
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
            View::Block => Shape {
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
        self.stacks.build(modules, None, &shape, meta)
    }

    fn add_off_cpu(&mut self, sample: &Unwound<'_>, off_cpu: OffCpu) {
        let wait = self.classifier.classify(sample.modules, sample.user);
        if self.view == View::Block && !wait.is_synchronization() {
            self.not_synchronization += 1;
            return;
        }
        let weight = i64::try_from(off_cpu.weight).unwrap_or(i64::MAX);
        let nanoseconds = i64::try_from(off_cpu.nanoseconds).unwrap_or(i64::MAX);
        let total = weight.saturating_mul(nanoseconds);
        self.off_cpu_ns = self.off_cpu_ns.saturating_add(total.unsigned_abs());
        let labels: &[(&str, &str)] = match self.view {
            View::Block => &[("wait", wait.label())],
            View::Wall { .. } => &[("state", "off-cpu"), ("wait", wait.label())],
        };
        self.stacks
            .add(&stack_sample(sample, labels), &[weight, total]);
    }
}

impl Aggregate for WaitStacks {
    type Extra = Observed;

    fn add(&mut self, sample: Unwound<'_>, observed: Observed) {
        match (observed, self.view) {
            (Observed::OffCpu(off_cpu), _) => self.add_off_cpu(&sample, off_cpu),
            (Observed::OnCpu, View::Wall { cpu_period }) => {
                let labels: &[(&str, &str)] = &[("state", "on-cpu")];
                self.stacks
                    .add(&stack_sample(&sample, labels), &[1, cpu_period]);
            }
            (Observed::OnCpu, View::Block) => {}
        }
    }

    fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    fn stacks(&mut self) -> &mut StackAggregate {
        &mut self.stacks
    }
}

fn stack_sample<'a>(
    sample: &Unwound<'a>,
    labels: &'a [(&'static str, &'a str)],
) -> StackSample<'a> {
    StackSample {
        tid: sample.tid,
        kernel: &[],
        user: sample.user,
        root: (sample.end == UnwindEnd::Truncated).then_some(PseudoFrame::Truncated),
        labels,
    }
}
