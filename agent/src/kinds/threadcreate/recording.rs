//! The threadcreate profile: every thread creation in the window, with its creating stack, and
//! the churn (the module documentation says how).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::aggregate::Creations;
use super::{probes_of_command, probes_of_process, Churn, ChurnSummary, ProbePoint};
use crate::probes::keeper::Keeper;
use crate::probes::tracefs::ProbeGroup;
use crate::profile::Meta;
use crate::recording::{
    percent, provenance, Event, Finished, Pipeline, Pump, Recording, Request, Window,
};
use crate::sampler::{Record, Sampler, SamplerConfig, SamplerStats, Trigger, WindowEvent};
use crate::unwind::{ModuleSet, StackUnwinder};

pub(super) fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(ThreadcreateRecording::open(request)?))
}

/// Set (to anything) in the agent's environment, probes are per CPU for every process even
/// where they could be scoped to the target: to compare the two (scripts/bench-threadcreate,
/// the tests).
pub const PER_CPU_ENV: &str = "RPROF_THREADCREATE_PER_CPU";

/// User time between two ticks of the sampler's own events in the scoped mode: those events
/// are there for their side-band records (creation, exit, names, mappings), not their ticks.
const SIDE_BAND_TICK_NS: u64 = 1_000_000_000;
/// The smallest stack copy the kernel accepts, for those ticks.
const NO_STACK: u32 = 8;

struct ThreadcreateRecording {
    pid: u32,
    /// `None` once stopped.
    pump: Option<Pump>,
    /// How the probes are opened; declared after the pump, whose events must close first.
    scope: Scope,
    pipeline: Pipeline<Creations>,
    /// The probed functions, named in the comments.
    probes: Vec<ProbePoint>,
    churn: Churn,
    summary: ChurnSummary,
    stats: SamplerStats,
}

/// Where the probes fire.
enum Scope {
    /// Defined in tracefs and opened on every thread of the target (inherited by the threads
    /// they create): no other process traps on them. The tracepoint ids of the probes, in the
    /// order of `probes`; dropping the keeper and then the group takes the definitions out.
    Target {
        events: Vec<WindowEvent>,
        keeper: Option<Keeper>,
        _group: ProbeGroup,
    },
    /// Per CPU for every task, through the uprobe PMU: every process mapping a probed file
    /// traps on it, and its records are dropped once read. Why this one.
    Host { why: String },
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
        let (sampler, scope) = open_sampler(request, &probes)?;
        let modules = ModuleSet::load(pid, Arc::clone(request.symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        let probed = probes.iter().filter_map(|p| p.code.clone()).collect();
        let pipeline = Pipeline::start(pid, StackUnwinder::new(modules), Creations::new(probed))
            .context("cannot start the unwinder thread")?;
        Ok(ThreadcreateRecording {
            pid,
            pump: Some(Pump::new(sampler)),
            scope,
            pipeline,
            probes,
            churn: Churn::default(),
            summary: ChurnSummary::default(),
            stats: SamplerStats::default(),
        })
    }
}

/// The sampler, with the probes scoped to the target where tracefs lets the agent define them
/// (root, tracefs mounted), else per CPU for every process, as the only form that needs
/// neither (CAP_PERFMON alone).
///
/// Scoped, the probes are opened per thread with `inherit`, which a uprobe-PMU event cannot
/// be (the target's pthread_create would fail: design-notes §8), next to per-thread events
/// ticking through user time rarely, which carry the side-band records. It works for a
/// launched command too: the probes follow its exec (they name files, not addresses, and the
/// events stay with its thread).
fn open_sampler(request: &Request<'_>, probes: &[ProbePoint]) -> Result<(Sampler, Scope)> {
    let why = if std::env::var_os(PER_CPU_ENV).is_some() {
        format!("{PER_CPU_ENV} is set")
    } else {
        match open_scoped(request, probes) {
            Ok(opened) => return Ok(opened),
            Err(error) => {
                tracing::debug!(
                    "threadcreate probes cannot be scoped to the target, so they are per CPU \
                     for every process: {error:#}"
                );
                format!("{error:#}")
            }
        }
    };
    let config = SamplerConfig {
        trigger: Trigger::Uprobes(probes.iter().map(ProbePoint::uprobe).collect()),
        stack_bytes: request.stack_bytes,
        ..SamplerConfig::new(request.pid)
    };
    Ok((Sampler::open(&config)?, Scope::Host { why }))
}

fn open_scoped(request: &Request<'_>, probes: &[ProbePoint]) -> Result<(Sampler, Scope)> {
    let mut group = ProbeGroup::new()?;
    let events = probes
        .iter()
        .map(|probe| {
            let defined = group.define(&probe.probe_path(), probe.offset, false)?;
            Ok(WindowEvent::Tracepoint {
                id: defined.id,
                stack_bytes: request.stack_bytes,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<u64> = events.iter().map(WindowEvent::id).collect();
    let keeper = Keeper::start(&ids)?;
    let config = SamplerConfig {
        trigger: Trigger::UserTime {
            period_ns: SIDE_BAND_TICK_NS,
        },
        stack_bytes: NO_STACK,
        probes: events.clone(),
        ..SamplerConfig::new(request.pid)
    };
    let sampler = Sampler::open(&config)?;
    Ok((
        sampler,
        Scope::Target {
            events,
            keeper: Some(keeper),
            _group: group,
        },
    ))
}

impl Recording for ThreadcreateRecording {
    fn label(&self) -> String {
        "threadcreate".to_owned()
    }

    fn pump(&mut self, timeout: Duration) {
        if let Some(pump) = &mut self.pump {
            let (pipeline, churn, hits) = (&self.pipeline, &mut self.churn, self.scope.hits());
            pump.pump(timeout, &mut |record| {
                forward(record, hits, pipeline, churn)
            });
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
        let (pipeline, churn, hits) = (&self.pipeline, &mut self.churn, self.scope.hits());
        pump.drain(&mut |record| forward(record, hits, pipeline, churn));
        self.stats = pump.sampler().stats();
        drop(pump);
        // The probes' events are closed: the keeper's hold can go.
        if let Scope::Target { keeper, .. } = &mut self.scope {
            *keeper = None;
        }
        self.summary = std::mem::take(&mut self.churn).finish(&live_threads(self.pid));
    }

    fn finish(self: Box<Self>, window: &Window) -> Result<Finished> {
        let this = *self;
        let (profile, unwinder) = this.pipeline.finish()?;
        let meta = Meta {
            start: window.start,
            duration: window.duration,
            comments: comments(
                &this.probes,
                &this.scope,
                &this.summary,
                &this.stats,
                &profile,
                window,
            ),
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

impl Scope {
    /// Which samples are probe hits: in the scoped mode, those of the probes' events (the
    /// others are the side-band events' ticks); per CPU, every sample.
    fn hits(&self) -> Option<&[WindowEvent]> {
        match self {
            Scope::Target { events, .. } => Some(events),
            Scope::Host { .. } => None,
        }
    }
}

/// The profile's comments: probes, churn, losses, coverage.
fn comments(
    probes: &[ProbePoint],
    scope: &Scope,
    churn: &ChurnSummary,
    stats: &SamplerStats,
    profile: &Creations,
    window: &Window,
) -> Vec<String> {
    let probes: Vec<String> = probes.iter().map(ToString::to_string).collect();
    let event = match scope {
        Scope::Target { .. } => format!(
            "event: uprobe (tracefs) on {}, opened on the target's threads only",
            probes.join(", ")
        ),
        Scope::Host { why } => format!(
            "event: uprobe on {}, per CPU for every process (they could not be scoped to \
             the target: {why})",
            probes.join(", ")
        ),
    };
    let mut comments = vec![
        provenance(window),
        event,
        churn.to_string(),
        format!(
            "creations: {}, lost records: {}, truncated stacks: {}",
            profile.creations(),
            profile.lost(),
            profile.truncated()
        ),
        // Per CPU, the probes fire in every process that maps the probed files.
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

/// Hands one record to the unwinder thread, and counts thread creation and exit. `hits`: the
/// events whose samples are creations (`None`: every sample).
fn forward(
    record: Record<'_>,
    hits: Option<&[WindowEvent]>,
    pipeline: &Pipeline<Creations>,
    churn: &mut Churn,
) {
    match record {
        Record::Sample(sample) => {
            if hits.is_none_or(|hits| hits.iter().any(|event| event.wrote(sample.raw))) {
                pipeline.send(Event::sample(&sample, ()));
            }
        }
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
