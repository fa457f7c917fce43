//! The CPU profile: CPU-time samples of every thread, unwound and aggregated, written in the
//! shape of Go's CPU profile (or as a flamegraph).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use super::pipeline::{Event, Pipeline};
use super::recording::{percent, Pump, Recording, Window};
use crate::cli::{RecordArgs, RecordFormat};
use crate::kallsyms::KernelSymbols;
use crate::profile::{write_atomically, CpuProfile, CpuProfileMeta};
use crate::sampler::{Record, Sampler, SamplerConfig, SamplerStats};
use crate::unwind::{ModuleSet, StackUnwinder};

pub struct CpuRecording {
    /// `None` once stopped.
    pump: Option<Pump>,
    pipeline: Pipeline<CpuProfile>,
    /// The event that drove sampling (cycles, cpu-clock).
    event: String,
    stats: SamplerStats,
}

impl CpuRecording {
    /// Starts sampling every thread of `pid` and the unwinder thread.
    pub fn open(args: &RecordArgs, pid: u32, symbolizer: &Arc<Symbolizer>) -> Result<Self> {
        let config = SamplerConfig {
            frequency: args.frequency,
            stack_bytes: args
                .stack_size
                .unwrap_or(crate::sampler::DEFAULT_STACK_BYTES),
            kernel: args.kernel,
            ..SamplerConfig::new(pid)
        };
        let sampler = Sampler::open(&config)?;
        let modules = ModuleSet::load(pid, Arc::clone(symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        let pipeline = Pipeline::start(pid, StackUnwinder::new(modules), CpuProfile::default())
            .context("cannot start the unwinder thread")?;
        Ok(CpuRecording {
            event: sampler.event_kind().to_string(),
            pump: Some(Pump::new(sampler)),
            pipeline,
            stats: SamplerStats::default(),
        })
    }
}

impl Recording for CpuRecording {
    fn label(&self) -> String {
        self.event.clone()
    }

    fn pump(&mut self, timeout: Duration) {
        if let Some(pump) = &mut self.pump {
            let pipeline = &self.pipeline;
            pump.pump(timeout, &mut |record| forward(record, pipeline));
        }
    }

    fn figures(&self) -> String {
        let counters = self.pipeline.counters();
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        format!(
            "{} samples, {} lost, {} unwind errors",
            load(&counters.samples),
            load(&counters.lost),
            load(&counters.truncated),
        )
    }

    fn stop(&mut self) {
        if let Some(mut pump) = self.pump.take() {
            let pipeline = &self.pipeline;
            pump.drain(&mut |record| forward(record, pipeline));
            self.stats = pump.sampler().stats();
        }
    }

    fn write(self: Box<Self>, window: &Window, output: &Path, args: &RecordArgs) -> Result<()> {
        let this = *self;
        let (profile, unwinder) = this.pipeline.finish()?;
        let kernel_symbols = if args.kernel {
            KernelSymbols::load()
        } else {
            None
        };
        let meta = CpuProfileMeta {
            frequency: args.frequency,
            start: window.start,
            duration: window.duration,
            comments: comments(&this.event, &this.stats, &profile, window, args.frequency),
        };
        let pprof = profile.build(unwinder.modules(), kernel_symbols.as_ref(), &meta);
        let bytes = match args.format {
            RecordFormat::Pprof => rprof_proto::encode_gzip(&pprof),
            RecordFormat::Flamegraph => crate::flamegraph::svg(
                &pprof,
                &format!("rprof-agent: PID {}, {}", window.pid, this.event),
            )?,
        };
        write_atomically(output, &bytes)
            .with_context(|| format!("cannot write {}", output.display()))?;
        report(
            output,
            &profile,
            &meta,
            &this.event,
            window,
            &pprof,
            args.top,
        );
        Ok(())
    }
}

/// The profile's comments: event, losses, coverage.
fn comments(
    event: &str,
    stats: &SamplerStats,
    profile: &CpuProfile,
    window: &Window,
    frequency: u64,
) -> Vec<String> {
    vec![
        format!(
            "rprof-agent {} record, PID {}",
            env!("CARGO_PKG_VERSION"),
            window.pid
        ),
        format!("event: {event} at {frequency} Hz"),
        format!(
            "samples: {}, lost: {}, truncated stacks: {}",
            profile.samples(),
            profile.lost(),
            profile.truncated()
        ),
        format!(
            "threads: {} attached, {} inherited",
            stats.threads_attached, stats.threads_inherited
        ),
    ]
}

/// Hands one record to the unwinder thread.
fn forward(record: Record<'_>, pipeline: &Pipeline<CpuProfile>) {
    let event = match record {
        Record::Sample(sample) => Event::sample(&sample),
        Record::Lost { count } => Event::Lost(count),
        Record::Comm { tid, name, .. } => Event::ThreadName {
            tid,
            name: name.to_string(),
        },
        Record::Mmap { exec: true, .. } => Event::CodeMapped,
        _ => return,
    };
    pipeline.send(event);
}

/// One summary line, then the top functions, so a result is visible without any other tool.
fn report(
    output: &Path,
    profile: &CpuProfile,
    meta: &CpuProfileMeta,
    event: &str,
    window: &Window,
    pprof: &rprof_proto::Profile,
    top: usize,
) {
    let why = window.outcome.note();
    let truncated_pct = percent(profile.truncated(), profile.samples());
    println!(
        "wrote {}: {} samples over {:.1}s{why} ({event}, {} Hz), {} lost, {} truncated stacks ({truncated_pct:.1}%), {} distinct stacks",
        output.display(),
        profile.samples(),
        meta.duration.as_secs_f64(),
        meta.frequency,
        profile.lost(),
        profile.truncated(),
        profile.distinct_stacks(),
    );
    if top > 0 && profile.samples() > 0 {
        print!("{}", crate::top::table(pprof, 0, top));
    }
}
