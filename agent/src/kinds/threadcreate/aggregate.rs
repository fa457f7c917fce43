//! The threadcreate kind's aggregate: the stacks that created threads, by creating thread name
//! and stack, in the shape of Go's own threadcreate profile (one sample type
//! `threadcreate/count`, period type the same, period 1).

use std::ops::Range;

use rprof_proto::Profile;

use crate::profile::{Meta, Shape, StackAggregate};
use crate::recording::{Aggregate, Unwound};
use crate::unwind::ModuleSet;

const COUNT: (&str, &str) = ("threadcreate", "count");

/// Aggregated thread creations of one process.
#[derive(Debug)]
pub struct Creations {
    /// Creators are kept by name, not id, so that a pool of short-lived creators does not
    /// split every stack.
    stacks: StackAggregate,
    /// The probed functions' code: a hit whose callers run one is a creation already counted
    /// (an interposer's pthread_create calling libc's).
    probed: Vec<Range<u64>>,
    repeated: u64,
    lost: u64,
}

impl Creations {
    /// An empty profile; `probed` is where the probed functions run in the target.
    pub fn new(probed: Vec<Range<u64>>) -> Self {
        Creations {
            stacks: StackAggregate::new(false),
            probed,
            repeated: 0,
            lost: 0,
        }
    }

    fn called_from_probed_function(&self, user: &[u64]) -> bool {
        user.iter()
            .skip(1)
            .any(|address| self.probed.iter().any(|code| code.contains(address)))
    }

    /// Thread creations counted (each hit once).
    pub fn creations(&self) -> u64 {
        self.stacks.samples()
    }

    pub fn truncated(&self) -> u64 {
        self.stacks.truncated()
    }

    /// Hits dropped because an outer probed function already counted the creation.
    pub fn repeated(&self) -> u64 {
        self.repeated
    }

    /// Records the kernel dropped (samples or side-band: a ring holds both).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn distinct_stacks(&self) -> usize {
        self.stacks.distinct_stacks()
    }

    /// The pprof profile: `threadcreate/count`, label `thread` (the creating thread's name).
    pub fn build(&self, modules: &ModuleSet, meta: &Meta) -> Profile {
        let shape = Shape {
            sample_types: &[COUNT],
            period_type: COUNT,
            period: 1,
            default_sample_type: None,
        };
        self.stacks.build(modules, None, &shape, meta)
    }
}

impl Aggregate for Creations {
    type Extra = ();

    /// One hit of a creation function, unwound (uprobe samples are taken in user mode: there
    /// are no kernel frames).
    fn add(&mut self, sample: Unwound<'_>, (): ()) {
        if self.called_from_probed_function(sample.user) {
            self.repeated += 1;
            return;
        }
        self.stacks.add(&sample.stack_sample(&[]), &[1]);
    }

    fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    fn stacks(&mut self) -> &mut StackAggregate {
        &mut self.stacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::UnwindEnd;

    fn hit(profile: &mut Creations, tid: u32, user: &[u64], end: UnwindEnd) {
        let modules = ModuleSet::load(std::process::id(), std::sync::Arc::default()).unwrap();
        let sample = Unwound {
            tid,
            kernel: &[],
            user,
            end,
            modules: &modules,
        };
        profile.add(sample, ());
    }

    #[test]
    fn creations_aggregate_by_creator_name_and_stack() {
        let mut profile = Creations::new(Vec::new());
        profile.stacks().names().set(10, "pool");
        assert!(profile.stacks().names().inherit(11, 10));
        assert!(!profile.stacks().names().inherit(13, 12));
        hit(&mut profile, 10, &[0x100, 0x200], UnwindEnd::Complete);
        hit(&mut profile, 11, &[0x100, 0x200], UnwindEnd::Complete);
        hit(&mut profile, 11, &[0x100, 0x300], UnwindEnd::Truncated);
        assert_eq!(profile.creations(), 3);
        assert_eq!(profile.truncated(), 1);
        assert_eq!(profile.distinct_stacks(), 2);
        profile.stacks().names().forget(11);
        hit(&mut profile, 11, &[0x100, 0x200], UnwindEnd::Complete);
        assert_eq!(
            profile.distinct_stacks(),
            3,
            "an unnamed creator is a stack of its own"
        );
    }

    #[test]
    fn a_creation_seen_again_inside_another_probe_counts_once() {
        // An interposer (0x500..0x600) calling libc's pthread_create (0x100..0x180).
        let mut profile = Creations::new(vec![0x100..0x180, 0x500..0x600]);
        hit(&mut profile, 1, &[0x500, 0x400], UnwindEnd::Complete);
        hit(&mut profile, 1, &[0x100, 0x520, 0x400], UnwindEnd::Complete);
        assert_eq!((profile.creations(), profile.repeated()), (1, 1));
    }
}
