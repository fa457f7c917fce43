//! The threadcreate profile: every thread creation in the window, with its creating stack, and
//! the churn (the module documentation says how).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::aggregate::Creations;
use super::{probes_of_command, probes_of_process, Churn, ChurnSummary, ProbePoint};
use crate::profile::Meta;
use crate::recording::{
    percent, provenance, Event, Finished, Pipeline, Pump, Recording, Request, Window,
};
use crate::sampler::{Record, Sampler, SamplerConfig, SamplerStats, Trigger};
use crate::unwind::{ModuleSet, StackUnwinder};

pub(super) fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(ThreadcreateRecording::open(request)?))
}

struct ThreadcreateRecording {
    pid: u32,
    /// `None` once stopped.
    pump: Option<Pump>,
    pipeline: Pipeline<Creations>,
    /// The probed functions, named in the comments.
    probes: Vec<ProbePoint>,
    churn: Churn,
    summary: ChurnSummary,
    stats: SamplerStats,
}

impl ThreadcreateRecording {
    /// Probes the thread-creation functions `pid` maps (for a launched command, the ones it
    /// will map: `program` is about to be exec'd) and starts the unwinder thread. Each hit
    /// copies `stack_bytes` of the creating thread's stack.
    fn open(request: &Request<'_>) -> Result<Self> {
        let pid = request.pid;
        let probes = match request.program {
            Some(program) => probes_of_command(pid, program),
            None => probes_of_process(pid),
        }
        .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        if probes.is_empty() {
            bail!(
                "PID {pid} maps no thread-creation function to probe (pthread_create, \
                 runtime.newosproc)"
            );
        }
        let config = SamplerConfig {
            trigger: Trigger::Uprobes(probes.iter().map(ProbePoint::uprobe).collect()),
            stack_bytes: request.stack_bytes,
            ..SamplerConfig::new(pid)
        };
        let sampler = Sampler::open(&config)?;
        let modules = ModuleSet::load(pid, Arc::clone(request.symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        let probed = probes.iter().filter_map(|p| p.code.clone()).collect();
        let pipeline = Pipeline::start(pid, StackUnwinder::new(modules), Creations::new(probed))
            .context("cannot start the unwinder thread")?;
        Ok(ThreadcreateRecording {
            pid,
            pump: Some(Pump::new(sampler)),
            pipeline,
            probes,
            churn: Churn::default(),
            summary: ChurnSummary::default(),
            stats: SamplerStats::default(),
        })
    }
}

impl Recording for ThreadcreateRecording {
    fn label(&self) -> String {
        "threadcreate".to_owned()
    }

    fn pump(&mut self, timeout: Duration) {
        if let Some(pump) = &mut self.pump {
            let (pipeline, churn) = (&self.pipeline, &mut self.churn);
            pump.pump(timeout, &mut |record| forward(record, pipeline, churn));
            pipeline.flush();
        }
    }

    fn figures(&self) -> String {
        let counters = self.pipeline.counters();
        format!(
            "{} thread creations, {} lost",
            counters.samples.load(Ordering::Relaxed),
            counters.lost.load(Ordering::Relaxed),
        )
    }

    fn stop(&mut self) {
        let Some(mut pump) = self.pump.take() else {
            return;
        };
        let (pipeline, churn) = (&self.pipeline, &mut self.churn);
        pump.drain(&mut |record| forward(record, pipeline, churn));
        self.stats = pump.sampler().stats();
        self.summary = std::mem::take(&mut self.churn).finish(&live_threads(self.pid));
    }

    fn finish(self: Box<Self>, window: &Window) -> Result<Finished> {
        let this = *self;
        let (profile, unwinder) = this.pipeline.finish()?;
        let meta = Meta {
            start: window.start,
            duration: window.duration,
            comments: comments(&this.probes, &this.summary, &this.stats, &profile, window),
        };
        let summary = summary(&profile, &this.summary, window);
        let has_samples = profile.creations() > 0;
        Ok(Finished {
            profile: profile.build(unwinder.modules(), &meta),
            summary,
            title: format!("rprof-agent: PID {}, threadcreate", window.pid),
            has_samples,
        })
    }
}

/// The profile's comments: probes, churn, losses, coverage.
fn comments(
    probes: &[ProbePoint],
    churn: &ChurnSummary,
    stats: &SamplerStats,
    profile: &Creations,
    window: &Window,
) -> Vec<String> {
    let probes: Vec<String> = probes.iter().map(ToString::to_string).collect();
    let mut comments = vec![
        provenance(window),
        format!("event: uprobe on {}", probes.join(", ")),
        churn.to_string(),
        format!(
            "creations: {}, lost records: {}, truncated stacks: {}",
            profile.creations(),
            profile.lost(),
            profile.truncated()
        ),
        // The probes fire in every process that maps the probed files.
        format!(
            "records of other processes dropped: {}",
            stats.foreign_dropped
        ),
        stats.drops(),
    ];
    if profile.repeated() > 0 {
        comments.push(format!(
            "{} hits inside another probed function (an interposer) counted once",
            profile.repeated()
        ));
    }
    comments
}

/// Hands one record to the unwinder thread, and counts thread creation and exit.
fn forward(record: Record<'_>, pipeline: &Pipeline<Creations>, churn: &mut Churn) {
    match record {
        Record::Sample(sample) => pipeline.send(Event::sample(&sample, ())),
        Record::Fork { tid, ptid, .. } => {
            churn.created(tid);
            pipeline.send(Event::ThreadCreated { tid, creator: ptid });
        }
        other => {
            if let Record::Exit { tid, .. } = other {
                churn.exited(tid);
            }
            Event::side_band(&other, |event| pipeline.send(event));
        }
    }
}

/// The target's threads now (none once it is gone).
fn live_threads(pid: u32) -> HashSet<u32> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashSet::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The summary line: creations, churn, losses.
fn summary(profile: &Creations, churn: &ChurnSummary, window: &Window) -> String {
    let why = window.outcome.note();
    let truncated_pct = percent(profile.truncated(), profile.creations());
    format!(
        "{} thread creations over {:.1}s{why}; {churn}; {} lost records, {} truncated stacks ({truncated_pct:.1}%), {} distinct stacks",
        profile.creations(),
        window.duration.as_secs_f64(),
        profile.lost(),
        profile.truncated(),
        profile.distinct_stacks(),
    )
}
