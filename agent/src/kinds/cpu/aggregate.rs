//! The CPU kind's aggregate: every sample stands for one sampling period of CPU time, weighted
//! `[1, period]` as Go's CPU profile (`samples/count`, `cpu/nanoseconds`).

use rprof_proto::Profile;

use crate::kallsyms::KernelNames;
use crate::kernel_entry::KernelEntries;
use crate::profile::{Meta, PseudoFrame, Shape, StackAggregate};
use crate::recording::{Aggregate, Unwound};
use crate::unwind::ModuleSet;

/// Go's CPU profile sample types.
const SAMPLE_TYPES: &[(&str, &str)] = &[("samples", "count"), ("cpu", "nanoseconds")];

/// Aggregated CPU samples of one process.
#[derive(Debug)]
pub struct CpuStacks {
    stacks: StackAggregate,
    /// Nanoseconds of CPU time one sample stands for: 1e9 / frequency.
    period: i64,
    lost: u64,
    /// Set when kernel-mode samples keep one kernel frame (the syscall), not the whole chain.
    collapse: Option<KernelEntries>,
}

impl CpuStacks {
    /// `collapse`: keep one frame of each kernel call chain, found with these entries.
    pub fn new(frequency: u64, collapse: Option<KernelEntries>) -> Self {
        CpuStacks {
            stacks: StackAggregate::new(true),
            period: 1_000_000_000 / i64::try_from(frequency.max(1)).unwrap_or(i64::MAX),
            lost: 0,
            collapse,
        }
    }

    pub fn samples(&self) -> u64 {
        self.stacks.samples()
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn truncated(&self) -> u64 {
        self.stacks.truncated()
    }

    pub fn kernel_addresses(&self) -> Vec<u64> {
        self.stacks.kernel_addresses()
    }

    pub fn distinct_stacks(&self) -> usize {
        self.stacks.distinct_stacks()
    }

    /// The pprof profile: Go's CPU shape, period 1e9/Hz, values [n, n*period], labels thread
    /// and tid; samples the kernel dropped under a `[lost samples]` frame.
    pub fn build(
        mut self,
        modules: &ModuleSet,
        kernel_names: Option<&KernelNames>,
        meta: &Meta,
    ) -> Profile {
        if self.lost > 0 {
            let lost = i64::try_from(self.lost).unwrap_or(i64::MAX);
            let values = [lost, lost.saturating_mul(self.period)];
            self.stacks.add_pseudo(PseudoFrame::LostSamples, &values);
        }
        let shape = Shape {
            sample_types: SAMPLE_TYPES,
            period_type: ("cpu", "nanoseconds"),
            period: self.period,
            default_sample_type: None,
        };
        self.stacks.build(modules, kernel_names, &shape, meta)
    }
}

impl Aggregate for CpuStacks {
    type Extra = ();

    fn add(&mut self, sample: Unwound<'_>, (): ()) {
        let mut stack = sample.stack_sample(&[]);
        let collapsed = KernelEntries::collapsed(self.collapse.as_ref(), stack.kernel);
        if let Some(one) = &collapsed {
            stack.kernel = one;
        }
        self.stacks.add(&stack, &[1, self.period]);
    }

    fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    fn stacks(&mut self) -> &mut StackAggregate {
        &mut self.stacks
    }
}
