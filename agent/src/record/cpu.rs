//! The CPU profile: CPU-time samples of every thread, unwound and aggregated, written in the
//! shape of Go's CPU profile (or as a flamegraph).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use super::coverage::CpuCoverage;
use super::pipeline::{Event, Pipeline};
use super::recording::{percent, Finished, Pump, Recording, Window};
use crate::kallsyms::KernelSymbols;
use crate::profile::{CpuProfile, CpuProfileMeta};
use crate::sampler::{Record, Sampler, SamplerConfig, SamplerStats};
use crate::unwind::{ModuleSet, StackUnwinder};

/// How to sample CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSettings {
    /// Samples per second per thread on CPU.
    pub frequency: u64,
    /// User stack bytes copied per sample.
    pub stack_bytes: u32,
    /// Also record kernel frames.
    pub kernel: bool,
}

pub struct CpuRecording {
    settings: CpuSettings,
    /// `None` once stopped.
    pump: Option<Pump>,
    pipeline: Pipeline<CpuProfile>,
    /// The event that drove sampling (cycles, cpu-clock).
    event: String,
    stats: SamplerStats,
    coverage: CpuCoverage,
}

impl CpuRecording {
    /// Starts sampling every thread of `pid` and the unwinder thread.
    pub fn open(settings: CpuSettings, pid: u32, symbolizer: &Arc<Symbolizer>) -> Result<Self> {
        let config = SamplerConfig {
            frequency: settings.frequency,
            stack_bytes: settings.stack_bytes,
            kernel: settings.kernel,
            ..SamplerConfig::new(pid)
        };
        let sampler = Sampler::open(&config)?;
        let modules = ModuleSet::load(pid, Arc::clone(symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        let pipeline = Pipeline::start(pid, StackUnwinder::new(modules), CpuProfile::default())
            .context("cannot start the unwinder thread")?;
        Ok(CpuRecording {
            settings,
            event: sampler.event_kind().to_string(),
            pump: Some(Pump::new(sampler)),
            pipeline,
            stats: SamplerStats::default(),
            coverage: CpuCoverage::start(pid, settings.kernel),
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
            self.coverage.stop();
        }
    }

    fn finish(self: Box<Self>, window: &Window) -> Result<Finished> {
        let CpuRecording {
            settings,
            pipeline,
            event,
            stats,
            coverage,
            ..
        } = *self;
        let (profile, unwinder) = pipeline.finish()?;
        let kernel_symbols = if settings.kernel {
            KernelSymbols::load()
        } else {
            None
        };
        let frequency = settings.frequency;
        let sampled = profile.samples().saturating_add(profile.lost());
        let mut comments = comments(&event, &stats, &profile, window, frequency);
        comments.extend(coverage.comment(sampled, frequency));
        let meta = CpuProfileMeta {
            frequency,
            start: window.start,
            duration: window.duration,
            comments,
        };
        let mut summary = summary(&profile, &meta, &event, window);
        if let Some(warning) = coverage.warning(sampled, frequency) {
            summary = format!("{summary}\nwarning: {warning}");
        }
        Ok(Finished {
            profile: profile.build(unwinder.modules(), kernel_symbols.as_ref(), &meta),
            summary,
            title: format!("rprof-agent: PID {}, {}", window.pid, event),
            has_samples: profile.samples() > 0,
        })
    }
}

/// The profile's comments: event, losses, threads.
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
    match record {
        Record::Sample(sample) => pipeline.send(Event::sample(&sample)),
        other => Event::side_band(&other, |event| pipeline.send(event)),
    }
}

/// The summary line, so a result is visible without any other tool.
fn summary(profile: &CpuProfile, meta: &CpuProfileMeta, event: &str, window: &Window) -> String {
    let why = window.outcome.note();
    let truncated_pct = percent(profile.truncated(), profile.samples());
    format!(
        "{} samples over {:.1}s{why} ({event}, {} Hz), {} lost, {} truncated stacks ({truncated_pct:.1}%), {} distinct stacks",
        profile.samples(),
        meta.duration.as_secs_f64(),
        meta.frequency,
        profile.lost(),
        profile.truncated(),
        profile.distinct_stacks(),
    )
}
