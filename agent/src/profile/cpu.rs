//! The CPU profile: stacks aggregated online (one counter per distinct thread+stack, never a list
//! of raw samples), written in the exact shape of Go's own CPU profile.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rprof_proto::{LabelSpec, Profile, ProfileBuilder};

use super::locations::{LocationTable, PseudoFrame};
use super::thread_names::{NameId, ThreadNames};
use crate::kallsyms::KernelSymbols;
use crate::unwind::{ModuleSet, UnwindEnd};

#[derive(Debug, PartialEq, Eq, Hash)]
struct StackKey {
    tid: u32,
    /// The thread's name when the sample was taken.
    thread: Option<NameId>,
    truncated: bool,
    /// Kernel frames, leaf first (empty unless --kernel).
    kernel: Box<[u64]>,
    /// User frames as lookup addresses, leaf first.
    user: Box<[u64]>,
}

/// What the profile says about how it was taken.
#[derive(Debug, Clone)]
pub struct CpuProfileMeta {
    pub frequency: u64,
    pub start: SystemTime,
    pub duration: Duration,
    /// Free-text lines (`go tool pprof -comments`): event used, lost samples, and so on.
    pub comments: Vec<String>,
}

/// Aggregated CPU samples of one process.
#[derive(Debug, Default)]
pub struct CpuProfile {
    stacks: HashMap<StackKey, u64>,
    thread_names: ThreadNames,
    samples: u64,
    lost: u64,
    truncated: u64,
}

impl CpuProfile {
    pub fn add(&mut self, tid: u32, kernel: &[u64], user: &[u64], end: UnwindEnd) {
        let truncated = end == UnwindEnd::Truncated;
        self.samples += 1;
        self.truncated += u64::from(truncated);
        let key = StackKey {
            tid,
            thread: self.thread_names.current(tid),
            truncated,
            kernel: kernel.into(),
            user: user.into(),
        };
        *self.stacks.entry(key).or_insert(0) += 1;
    }

    pub fn add_lost(&mut self, count: u64) {
        self.lost = self.lost.saturating_add(count);
    }

    pub fn set_thread_name(&mut self, tid: u32, name: &str) {
        self.thread_names.set(tid, name);
    }

    /// `tid` exited: its id may name another thread next.
    pub fn forget_thread(&mut self, tid: u32) {
        self.thread_names.forget(tid);
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    pub fn distinct_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Builds the pprof profile: sample types samples/count and cpu/nanoseconds, period type
    /// cpu/nanoseconds, period 1e9/Hz, values [n, n*period], labels thread and tid.
    pub fn build(
        &self,
        modules: &ModuleSet,
        kernel_symbols: Option<&KernelSymbols>,
        meta: &CpuProfileMeta,
    ) -> Profile {
        let period = 1_000_000_000 / i64::try_from(meta.frequency.max(1)).unwrap_or(i64::MAX);
        let mut builder = ProfileBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            period,
        );
        super::window::describe(&mut builder, meta.start, meta.duration, &meta.comments);
        let mut table = LocationTable::new(modules, &mut builder);
        for (key, &count) in &self.stacks {
            let ids = self.location_ids(&mut table, &mut builder, key, kernel_symbols);
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            let tid = key.tid.to_string();
            let name = self.thread_names.text(key.thread);
            let labels = [LabelSpec::str("thread", name), LabelSpec::str("tid", &tid)];
            builder.add_sample(&ids, &[count, count.saturating_mul(period)], &labels);
        }
        if self.lost > 0 {
            let id = table.pseudo_location(&mut builder, PseudoFrame::LostSamples);
            let lost = i64::try_from(self.lost).unwrap_or(i64::MAX);
            builder.add_sample(&[id], &[lost, lost.saturating_mul(period)], &[]);
        }
        builder.build()
    }

    fn location_ids(
        &self,
        table: &mut LocationTable<'_>,
        builder: &mut ProfileBuilder,
        key: &StackKey,
        kernel_symbols: Option<&KernelSymbols>,
    ) -> Vec<u64> {
        let mut ids: Vec<u64> = key
            .kernel
            .iter()
            .map(|&addr| {
                table.kernel_location(builder, addr, kernel_symbols.and_then(|k| k.name(addr)))
            })
            .collect();
        ids.extend(table.user_stack(builder, &key.user));
        if key.truncated {
            ids.push(table.pseudo_location(builder, PseudoFrame::Truncated));
        }
        ids
    }
}
