//! The growth kind: where resident memory grows. Every page a thread touches for the first
//! time (a new heap or stack page, a mapped file page, a copy-on-write) costs it a page fault;
//! sampling the faults with their stacks shows which code grows the process's memory, and by
//! how much: `faults/count`, `resident/bytes` (faults × the page size: what those first touches
//! made resident, before anything was freed). The cheap view of memory: no uprobe, nothing
//! done on malloc, the privilege of a CPU profile.
//!
//! How: a `page-faults` perf event on every thread, sampling one fault in [`PERIOD`], each
//! sample weighted by it. The period is prime, so that a program's regular patterns of faults
//! (rounds of powers of two pages) cannot line up with it and bias the split between sites.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rprof_proto::Profile;

use super::{Endpoint, Form, Kind, Source};
use crate::profile::{Meta, Shape, StackAggregate};
use crate::recording::{
    percent, provenance, Aggregate, Event, Finished, Pipeline, Pump, Recording, Request, Unwound,
    Window,
};
use crate::sampler::{Record, Sampler, SamplerConfig, SamplerStats, Trigger};
use crate::unwind::{ModuleSet, StackUnwinder};

/// Faults per sample: a few hundred samples a second for a process growing by hundreds of
/// MiB a second.
pub const PERIOD: u64 = 127;

pub static KIND: Kind = Kind {
    name: "growth",
    help: "Where resident memory grows: the stacks that take page faults (faults/count, \
           resident/bytes)",
    go_name: "growth",
    source: Source::Recorded(open),
    endpoints: &[Endpoint {
        name: "growth",
        path: None,
        description: "Stack traces that made memory resident (page faults, sampled), recorded \
                      for the seconds GET parameter (default 30)",
        form: Form::Recorded,
    }],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(GrowthRecording::open(request)?))
}

struct GrowthRecording {
    /// `None` once stopped.
    pump: Option<Pump>,
    pipeline: Pipeline<Faults>,
    stats: SamplerStats,
}

impl GrowthRecording {
    fn open(request: &Request<'_>) -> Result<Self> {
        let pid = request.pid;
        let config = SamplerConfig {
            trigger: Trigger::PageFaults { period: PERIOD },
            stack_bytes: request.stack_bytes,
            ..SamplerConfig::new(pid)
        };
        let sampler = Sampler::open(&config)?;
        let modules = ModuleSet::load(pid, Arc::clone(request.symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        let pipeline = Pipeline::start(pid, StackUnwinder::new(modules), Faults::new())
            .context("cannot start the unwinder thread")?;
        Ok(GrowthRecording {
            pump: Some(Pump::new(sampler)),
            pipeline,
            stats: SamplerStats::default(),
        })
    }
}

impl Recording for GrowthRecording {
    fn label(&self) -> String {
        "page-faults".to_owned()
    }

    fn pump(&mut self, timeout: Duration) {
        if let Some(pump) = &mut self.pump {
            let pipeline = &self.pipeline;
            pump.pump(timeout, &mut |record| forward(record, pipeline));
            pipeline.flush();
        }
    }

    fn figures(&self) -> String {
        let counters = self.pipeline.counters();
        format!(
            "{} samples, {} lost",
            counters.samples.load(Ordering::Relaxed),
            counters.lost.load(Ordering::Relaxed)
        )
    }

    fn stop(&mut self) {
        if let Some(mut pump) = self.pump.take() {
            let pipeline = &self.pipeline;
            pump.drain(&mut |record| forward(record, pipeline));
            self.stats = pump.sampler().stats();
        }
    }

    fn finish(self: Box<Self>, window: &Window) -> Result<Finished> {
        let (faults, unwinder) = self.pipeline.finish()?;
        let comments = vec![
            provenance(window),
            format!(
                "event: page-faults taken in user space, 1 in {PERIOD} sampled and weighted \
                 by it; resident = faults × {} bytes",
                faults.page_size
            ),
            format!(
                "samples: {}, faults: {}, truncated stacks: {}",
                faults.stacks.samples(),
                faults.faults,
                faults.stacks.truncated()
            ),
            self.stats.drops(),
        ];
        let meta = Meta {
            start: window.start,
            duration: window.duration,
            comments,
        };
        let summary = format!(
            "{} page faults ({} MiB made resident) over {:.1}s{} in {} samples, {} lost, {} \
             truncated stacks ({:.1}%), {} distinct stacks",
            faults.faults,
            faults.faults.saturating_mul(faults.page_size) >> 20,
            window.duration.as_secs_f64(),
            window.outcome.note(),
            faults.stacks.samples(),
            self.stats.lost,
            faults.stacks.truncated(),
            percent(faults.stacks.truncated(), faults.stacks.samples()),
            faults.stacks.distinct_stacks(),
        );
        Ok(Finished {
            profile: faults.build(unwinder.modules(), &meta),
            summary,
            title: format!("rprof-agent: PID {}, growth", window.pid),
            has_samples: faults.stacks.samples() > 0,
        })
    }
}

/// A page-fault sample carries the faults it stands for.
fn forward(record: Record<'_>, pipeline: &Pipeline<Faults>) {
    match record {
        Record::Sample(sample) => pipeline.send(Event::sample(&sample, PERIOD)),
        other => Event::side_band(&other, |event| pipeline.send(event)),
    }
}

/// Page faults by stack.
struct Faults {
    stacks: StackAggregate,
    page_size: u64,
    faults: u64,
}

impl Faults {
    fn new() -> Self {
        Faults {
            stacks: StackAggregate::new(true),
            page_size: procfs::page_size(),
            faults: 0,
        }
    }

    fn build(&self, modules: &ModuleSet, meta: &Meta) -> Profile {
        let shape = Shape {
            sample_types: &[("faults", "count"), ("resident", "bytes")],
            period_type: ("faults", "count"),
            period: 1,
            default_sample_type: Some("resident"),
        };
        self.stacks.build(modules, None, &shape, meta)
    }
}

impl Aggregate for Faults {
    /// The faults the sample stands for.
    type Extra = u64;

    fn add(&mut self, sample: Unwound<'_>, faults: u64) {
        self.faults = self.faults.saturating_add(faults);
        let faults = i64::try_from(faults).unwrap_or(i64::MAX);
        let page = i64::try_from(self.page_size).unwrap_or(4096);
        let sample = sample.stack_sample(&[]);
        self.stacks
            .add(&sample, &[faults, faults.saturating_mul(page)]);
    }

    fn add_lost(&mut self, _count: u64) {}

    fn stacks(&mut self) -> &mut StackAggregate {
        &mut self.stacks
    }
}
