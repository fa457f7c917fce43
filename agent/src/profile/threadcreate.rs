//! The threadcreate profile: the stacks that created threads, aggregated online by creating
//! thread name and stack, written in the shape of Go's own threadcreate profile (one sample
//! type `threadcreate/count`, period type the same, period 1).

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use rprof_proto::{LabelSpec, Profile, ProfileBuilder};

use super::locations::{LocationTable, PseudoFrame};
use super::thread_names::{NameId, ThreadNames};
use crate::unwind::{ModuleSet, UnwindEnd};

#[derive(Debug, PartialEq, Eq, Hash)]
struct StackKey {
    /// The creating thread's name: creators are aggregated by name, not id, so that a pool of
    /// short-lived creators does not split every stack.
    thread: Option<NameId>,
    truncated: bool,
    /// User frames as lookup addresses, leaf (the creation function) first.
    user: Box<[u64]>,
}

/// What the profile says about how it was taken.
#[derive(Debug, Clone)]
pub struct ThreadcreateMeta {
    pub start: SystemTime,
    pub duration: Duration,
    /// Free-text lines (`go tool pprof -comments`): probes, churn, lost records.
    pub comments: Vec<String>,
}

/// Aggregated thread creations of one process.
#[derive(Debug, Default)]
pub struct ThreadcreateProfile {
    stacks: HashMap<StackKey, u64>,
    /// Thread names, from the side-band records and /proc.
    names: ThreadNames,
    /// The probed functions' code: a hit whose callers run one is a creation already counted
    /// (an interposer's pthread_create calling libc's).
    probed: Vec<Range<u64>>,
    creations: u64,
    truncated: u64,
    repeated: u64,
    lost: u64,
}

impl ThreadcreateProfile {
    /// An empty profile; `probed` is where the probed functions run in the target.
    pub fn new(probed: Vec<Range<u64>>) -> Self {
        ThreadcreateProfile {
            probed,
            ..ThreadcreateProfile::default()
        }
    }

    /// One hit of a creation function in thread `tid`, unwound (`user` leaf first).
    pub fn add(&mut self, tid: u32, user: &[u64], end: UnwindEnd) {
        if self.called_from_probed_function(user) {
            self.repeated += 1;
            return;
        }
        let truncated = end == UnwindEnd::Truncated;
        self.creations += 1;
        self.truncated += u64::from(truncated);
        let key = StackKey {
            thread: self.names.current(tid),
            truncated,
            user: user.into(),
        };
        *self.stacks.entry(key).or_insert(0) += 1;
    }

    fn called_from_probed_function(&self, user: &[u64]) -> bool {
        user.iter()
            .skip(1)
            .any(|address| self.probed.iter().any(|code| code.contains(address)))
    }

    /// Records the kernel dropped (samples or side-band: a ring holds both).
    pub fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    pub fn set_thread_name(&mut self, tid: u32, name: &str) {
        self.names.set(tid, name);
    }

    /// `tid` was created by `creator`, whose name it starts with (the kernel copies it).
    /// Returns whether the creator's name was known.
    pub fn inherit_thread_name(&mut self, tid: u32, creator: u32) -> bool {
        self.names.inherit(tid, creator)
    }

    /// `tid` exited: its id may name another thread next.
    pub fn forget_thread(&mut self, tid: u32) {
        self.names.forget(tid);
    }

    /// Thread creations counted (each hit once).
    pub fn creations(&self) -> u64 {
        self.creations
    }

    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Hits dropped because an outer probed function already counted the creation.
    pub fn repeated(&self) -> u64 {
        self.repeated
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn distinct_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Builds the pprof profile: sample type threadcreate/count, period type the same, period
    /// 1, label `thread` (the creating thread's name).
    pub fn build(&self, modules: &ModuleSet, meta: &ThreadcreateMeta) -> Profile {
        let count_type = ("threadcreate", "count");
        let mut builder = ProfileBuilder::new(&[count_type], count_type, 1);
        super::window::describe(&mut builder, meta.start, meta.duration, &meta.comments);
        let mut table = LocationTable::new(modules, &mut builder);
        for (key, &count) in &self.stacks {
            let mut ids = table.user_stack(&mut builder, &key.user);
            if key.truncated {
                ids.push(table.pseudo_location(&mut builder, PseudoFrame::Truncated));
            }
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            let thread = self.names.text(key.thread);
            builder.add_sample(&ids, &[count], &[LabelSpec::str("thread", thread)]);
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_aggregate_by_creator_name_and_stack() {
        let mut profile = ThreadcreateProfile::new(Vec::new());
        profile.set_thread_name(10, "pool");
        assert!(profile.inherit_thread_name(11, 10));
        assert!(!profile.inherit_thread_name(13, 12));
        profile.add(10, &[0x100, 0x200], UnwindEnd::Complete);
        profile.add(11, &[0x100, 0x200], UnwindEnd::Complete);
        profile.add(11, &[0x100, 0x300], UnwindEnd::Truncated);
        assert_eq!(profile.creations(), 3);
        assert_eq!(profile.truncated(), 1);
        assert_eq!(profile.distinct_stacks(), 2);
        profile.forget_thread(11);
        profile.add(11, &[0x100, 0x200], UnwindEnd::Complete);
        assert_eq!(
            profile.distinct_stacks(),
            3,
            "an unnamed creator is a stack of its own"
        );
    }

    #[test]
    fn a_creation_seen_again_inside_another_probe_counts_once() {
        // An interposer (0x500..0x600) calling libc's pthread_create (0x100..0x180).
        let mut profile = ThreadcreateProfile::new(vec![0x100..0x180, 0x500..0x600]);
        profile.add(1, &[0x500, 0x400], UnwindEnd::Complete);
        profile.add(1, &[0x100, 0x520, 0x400], UnwindEnd::Complete);
        assert_eq!((profile.creations(), profile.repeated()), (1, 1));
    }
}
