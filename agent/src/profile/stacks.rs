//! The one aggregate every profile kind builds on: distinct stacks, each with a vector of values
//! (a count, nanoseconds, bytes: the kind's sample types) summed online — one entry per distinct
//! thread + labels + stack, never a list of raw samples — then written as a pprof profile of the
//! kind's shape.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rprof_proto::{LabelSpec, Profile, ProfileBuilder};

use super::locations::{LocationTable, PseudoFrame};
use super::thread_names::{NameId, ThreadNames};
use crate::kallsyms::KernelNames;
use crate::unwind::ModuleSet;

/// A kind's pprof shape: sample types, period and default sample type.
#[derive(Debug, Clone)]
pub struct Shape<'a> {
    /// `(type, unit)` of each value, e.g. `("samples", "count"), ("cpu", "nanoseconds")`.
    pub sample_types: &'a [(&'a str, &'a str)],
    pub period_type: (&'a str, &'a str),
    pub period: i64,
    /// The sample type pprof shows first (`-sample_index` default); None: pprof's (the last).
    pub default_sample_type: Option<&'a str>,
}

/// When a profile was taken and what it says about itself.
#[derive(Debug, Clone)]
pub struct Meta {
    pub start: SystemTime,
    pub duration: Duration,
    /// Free-text lines (`go tool pprof -comments`): event used, losses, and so on.
    pub comments: Vec<String>,
}

/// One unwound sample as a kind files it.
#[derive(Debug, Clone, Copy)]
pub struct StackSample<'a> {
    pub tid: u32,
    /// Kernel frames, leaf first (empty unless kernel frames are recorded).
    pub kernel: &'a [u64],
    /// User frames as lookup addresses, leaf first.
    pub user: &'a [u64],
    /// A frame below the outermost one: the stack was truncated, or not captured at all.
    pub root: Option<PseudoFrame>,
    /// The kind's own labels (`state`, `wait`, ...), before `thread` and `tid`.
    pub labels: &'a [(&'static str, &'a str)],
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct StackKey {
    /// Set when the kind splits stacks by thread id (label `tid`).
    tid: Option<u32>,
    /// The thread's name when the sample was taken.
    thread: Option<NameId>,
    labels: Box<[(&'static str, Box<str>)]>,
    /// A stack of one pseudo frame standing for no thread (`[lost samples]`): no labels.
    threadless: bool,
    root: Option<PseudoFrame>,
    kernel: Box<[u64]>,
    user: Box<[u64]>,
}

/// Stacks with summed values, and the thread names they were taken under.
#[derive(Debug)]
pub struct StackAggregate {
    stacks: HashMap<StackKey, Vec<i64>>,
    names: ThreadNames,
    /// Label samples with `tid` and keep threads apart (a CPU profile); else threads of one
    /// name are one (a pool of short-lived creators must not split every stack).
    by_tid: bool,
    samples: u64,
    truncated: u64,
}

impl StackAggregate {
    pub fn new(by_tid: bool) -> Self {
        StackAggregate {
            stacks: HashMap::new(),
            names: ThreadNames::default(),
            by_tid,
            samples: 0,
            truncated: 0,
        }
    }

    /// Adds `values` (one per sample type) to the sample's stack.
    pub fn add(&mut self, sample: &StackSample<'_>, values: &[i64]) {
        self.samples += 1;
        self.truncated += u64::from(sample.root == Some(PseudoFrame::Truncated));
        let key = StackKey {
            tid: self.by_tid.then_some(sample.tid),
            thread: self.names.current(sample.tid),
            labels: sample
                .labels
                .iter()
                .map(|&(key, value)| (key, value.into()))
                .collect(),
            threadless: false,
            root: sample.root,
            kernel: sample.kernel.into(),
            user: sample.user.into(),
        };
        accumulate(self.stacks.entry(key).or_default(), values);
    }

    /// Adds `values` under a stack of one pseudo frame and no thread (e.g. `[lost samples]`).
    /// Not counted as a sample.
    pub fn add_pseudo(&mut self, frame: PseudoFrame, values: &[i64]) {
        let key = StackKey {
            tid: None,
            thread: None,
            labels: Box::default(),
            threadless: true,
            root: Some(frame),
            kernel: Box::default(),
            user: Box::default(),
        };
        accumulate(self.stacks.entry(key).or_default(), values);
    }

    /// The threads' names, kept up to date from side-band records and /proc.
    pub fn names(&mut self) -> &mut ThreadNames {
        &mut self.names
    }

    /// Samples added.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples whose stack was truncated.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    pub fn distinct_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Every kernel address in the stacks, sorted, once each: what the kernel's symbols must
    /// name.
    pub fn kernel_addresses(&self) -> Vec<u64> {
        let mut addresses: Vec<u64> = self
            .stacks
            .keys()
            .flat_map(|key| key.kernel.iter().copied())
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        addresses
    }

    /// Builds the symbolized pprof profile. Labels: the kind's, then `thread` (name), then
    /// `tid` when stacks are kept by thread id.
    pub fn build(
        &self,
        modules: &ModuleSet,
        kernel_names: Option<&KernelNames>,
        shape: &Shape<'_>,
        meta: &Meta,
    ) -> Profile {
        // Unwinding is over: the unwind tables' pages it touched need not stay resident while
        // names are read (a big program's can be megabytes, read back on demand).
        modules.symbolizer().release_pages();
        let mut builder = ProfileBuilder::new(shape.sample_types, shape.period_type, shape.period);
        if let Some(default) = shape.default_sample_type {
            builder.set_default_sample_type(default);
        }
        super::window::describe(&mut builder, meta.start, meta.duration, &meta.comments);
        let mut table = LocationTable::new(modules, &mut builder);
        for (key, values) in &self.stacks {
            let ids = location_ids(&mut table, &mut builder, key, kernel_names);
            let tid = key.tid.map(|tid| tid.to_string());
            let mut labels: Vec<LabelSpec<'_>> = key
                .labels
                .iter()
                .map(|(name, value)| LabelSpec::str(name, value))
                .collect();
            if !key.threadless {
                labels.push(LabelSpec::str("thread", self.names.text(key.thread)));
            }
            if let Some(tid) = &tid {
                labels.push(LabelSpec::str("tid", tid));
            }
            builder.add_sample(&ids, values, &labels);
        }
        builder.build()
    }
}

/// Adds `values` element-wise, saturating: a target cannot overflow a profile.
fn accumulate(sum: &mut Vec<i64>, values: &[i64]) {
    if sum.len() < values.len() {
        sum.resize(values.len(), 0);
    }
    for (total, &value) in sum.iter_mut().zip(values) {
        *total = total.saturating_add(value);
    }
}

fn location_ids(
    table: &mut LocationTable<'_>,
    builder: &mut ProfileBuilder,
    key: &StackKey,
    kernel_names: Option<&KernelNames>,
) -> Vec<u64> {
    let mut ids: Vec<u64> = key
        .kernel
        .iter()
        .map(|&addr| {
            let name = kernel_names.and_then(|k| k.name(addr));
            table.kernel_location(builder, addr, name.as_deref())
        })
        .collect();
    ids.extend(table.user_stack(builder, &key.user));
    if let Some(root) = key.root {
        ids.push(table.pseudo_location(builder, root));
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(tid: u32, user: &'a [u64], root: Option<PseudoFrame>) -> StackSample<'a> {
        StackSample {
            tid,
            kernel: &[],
            user,
            root,
            labels: &[],
        }
    }

    #[test]
    fn values_are_summed_per_thread_and_stack() {
        let mut by_tid = StackAggregate::new(true);
        by_tid.names().set(1, "a");
        by_tid.names().set(2, "a");
        by_tid.add(&sample(1, &[0x10, 0x20], None), &[1, 10]);
        by_tid.add(&sample(1, &[0x10, 0x20], None), &[1, 10]);
        by_tid.add(&sample(2, &[0x10, 0x20], None), &[1, 10]);
        by_tid.add(&sample(2, &[0x10], Some(PseudoFrame::Truncated)), &[1, 10]);
        assert_eq!(by_tid.samples(), 4);
        assert_eq!(by_tid.truncated(), 1);
        assert_eq!(by_tid.distinct_stacks(), 3);
        let key = by_tid.stacks.keys().find(|k| k.tid == Some(1)).unwrap();
        assert_eq!(by_tid.stacks[key], vec![2, 20]);

        let mut by_name = StackAggregate::new(false);
        by_name.names().set(1, "a");
        by_name.names().set(2, "a");
        by_name.add(&sample(1, &[0x10], None), &[3]);
        by_name.add(&sample(2, &[0x10], None), &[4]);
        assert_eq!(by_name.distinct_stacks(), 1, "one name, one stack");
        assert_eq!(by_name.stacks.values().next().unwrap(), &vec![7]);
    }

    #[test]
    fn labels_split_stacks_and_sums_saturate() {
        let mut stacks = StackAggregate::new(false);
        let on = [("state", "on-cpu")];
        let off = [("state", "off-cpu")];
        for labels in [&on, &off, &on] {
            let sample = StackSample {
                labels,
                ..sample(1, &[0x10], None)
            };
            stacks.add(&sample, &[1, i64::MAX]);
        }
        assert_eq!(stacks.distinct_stacks(), 2);
        assert!(stacks.stacks.values().any(|v| v == &vec![2, i64::MAX]));
        stacks.add_pseudo(PseudoFrame::LostSamples, &[5, 50]);
        assert_eq!(stacks.samples(), 3, "pseudo stacks are not samples");
        assert_eq!(stacks.distinct_stacks(), 3);
    }
}
