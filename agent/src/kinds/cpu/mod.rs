//! The CPU kind: CPU-time samples of every thread (perf's cycles, or the cpu-clock timer where
//! there is no PMU), unwound and aggregated, in the shape of Go's CPU profile; served as Go's
//! `/debug/pprof/profile`.

mod aggregate;
mod coverage;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Endpoint, Form, Kind, Source};
use crate::gostack::{GoStacks, NotFollowed};
use crate::kallsyms::{KernelNames, KernelSymbols};
use crate::kernel_entry::KernelEntries;
use crate::profile::Meta;
use crate::recording::{
    percent, provenance, Event, Finished, Pipeline, Pump, Recording, Request, Window,
};
use crate::sampler::{Record, Sampler, SamplerConfig, SamplerError, SamplerStats};
use crate::unwind::{ModuleSet, StackUnwinder};
use aggregate::CpuStacks;
use coverage::CpuCoverage;

pub static KIND: Kind = Kind {
    name: "cpu",
    help: "Where CPU time goes (samples/count, cpu/nanoseconds), as Go's CPU profile",
    go_name: "CPU",
    source: Source::Recorded(open),
    endpoints: &[Endpoint {
        name: "profile",
        path: None,
        description: "CPU profile. You can specify the duration in the seconds GET parameter. \
                      After you get the profile file, use the go tool pprof command to \
                      investigate the profile.",
        form: Form::Window,
    }],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    let settings = CpuSettings {
        frequency: request.frequency,
        stack_bytes: request.stack_bytes,
        kernel: request.kernel,
    };
    Ok(Box::new(CpuRecording::open(settings, request)?))
}

/// How to sample CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuSettings {
    /// Samples per second per thread on CPU.
    pub frequency: u64,
    /// User stack bytes copied per sample.
    pub stack_bytes: u32,
    /// Keep the kernel's own frames (`--kernel`); without it, time in the kernel is still
    /// sampled where allowed, under one frame naming the syscall.
    pub kernel: bool,
}

struct CpuRecording {
    settings: CpuSettings,
    /// `None` once stopped.
    pump: Option<Pump>,
    pipeline: Pipeline<CpuStacks>,
    /// The event that drove sampling (cycles, cpu-clock).
    event: String,
    stats: SamplerStats,
    coverage: CpuCoverage,
    /// Why system time is not sampled, when the kernel refused it.
    system_refused: Option<String>,
    /// The target's own cgroup, when per-CPU events scoped to it do the sampling.
    cgroup: Option<String>,
    /// Goroutine stacks copied with the samples of a Go target, or why not.
    go: Result<GoStacks, NotFollowed>,
}

impl CpuRecording {
    /// Starts sampling every thread of `pid` and the unwinder thread.
    fn open(settings: CpuSettings, request: &Request<'_>) -> Result<Self> {
        let pid = request.pid;
        let modules = ModuleSet::load(pid, Arc::clone(request.symbolizer))
            .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
        let go = GoStacks::for_target(&modules, request.program, false);
        let on_sample = go.as_ref().ok().map(GoStacks::program_fd);
        let (sampler, system_refused) = open_sampler(&settings, pid, on_sample)?;
        let system = system_refused.is_none();
        let collapse = (system && !settings.kernel).then(KernelEntries::load);
        let stacks = CpuStacks::new(settings.frequency, collapse);
        let mut unwinder = StackUnwinder::new(modules);
        // What the target mapped between reading its modules and the events' start is in no
        // mmap record.
        unwinder.refresh_modules();
        let pipeline =
            Pipeline::start(pid, unwinder, stacks).context("cannot start the unwinder thread")?;
        Ok(CpuRecording {
            settings,
            cgroup: sampler.cgroup().map(str::to_owned),
            event: sampler.event_kind().to_string(),
            pump: Some(Pump::new(sampler)),
            pipeline,
            stats: SamplerStats::default(),
            coverage: CpuCoverage::start(pid, system),
            system_refused,
            go,
        })
    }
}

/// Opens the sampler with kernel-mode samples, so that system time is in the profile as Go's
/// is. Where the kernel refuses them (perf_event_paranoid ≥ 2 without CAP_PERFMON), user time
/// alone, with the reason: unless `--kernel` asked for kernel frames, which is then an error.
fn open_sampler(
    settings: &CpuSettings,
    pid: u32,
    on_sample: Option<i32>,
) -> Result<(Sampler, Option<String>)> {
    let config = SamplerConfig {
        frequency: settings.frequency,
        stack_bytes: settings.stack_bytes,
        kernel: true,
        cgroup_scope: true,
        on_sample,
        ..SamplerConfig::new(pid)
    };
    let paranoid = match Sampler::open(&config) {
        Ok(sampler) => return Ok((sampler, None)),
        Err(SamplerError::PermissionDenied { paranoid, .. }) => paranoid,
        Err(other) => return Err(other.into()),
    };
    let user_only = SamplerConfig {
        kernel: false,
        ..config
    };
    // Refused for user time too: the refusal is about the process, not the kernel.
    let sampler = Sampler::open(&user_only)?;
    let paranoid = paranoid.map_or("unreadable".to_owned(), |p| p.to_string());
    if settings.kernel {
        bail!(
            "not allowed to sample the kernel frames of PID {pid} (kernel.perf_event_paranoid = \
             {paranoid}): grant CAP_PERFMON (Linux ≥5.8), run as root or set \
             kernel.perf_event_paranoid ≤ 1 — or drop --kernel"
        );
    }
    Ok((
        sampler,
        Some(format!(
            "the kernel refused to sample time in the kernel (kernel.perf_event_paranoid = \
             {paranoid}, no CAP_PERFMON)"
        )),
    ))
}

impl Recording for CpuRecording {
    fn label(&self) -> String {
        self.event.clone()
    }

    fn pump(&mut self, timeout: Duration) {
        if let Some(pump) = &mut self.pump {
            let pipeline = &self.pipeline;
            let mut go = self.go.as_mut().ok();
            pump.pump(timeout, &mut |record| {
                forward(record, pipeline, go.as_deref_mut())
            });
            pipeline.flush();
        }
    }

    fn figures(&self) -> String {
        let counters = self.pipeline.counters();
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        format!(
            "{} samples, {} lost, {} truncated stacks",
            load(&counters.samples),
            load(&counters.lost),
            load(&counters.truncated),
        )
    }

    fn stop(&mut self) {
        if let Some(mut pump) = self.pump.take() {
            let pipeline = &self.pipeline;
            let mut go = self.go.as_mut().ok();
            pump.drain(&mut |record| forward(record, pipeline, go.as_deref_mut()));
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
            system_refused,
            cgroup,
            go,
            ..
        } = *self;
        let (profile, unwinder) = pipeline.finish()?;
        let kernel_addresses = profile.kernel_addresses();
        let kernel_symbols = KernelSymbols::load_for(&kernel_addresses);
        let kernel_names = if settings.kernel {
            kernel_symbols.map(KernelNames::Functions)
        } else {
            Some(KernelNames::Entries(kernel_symbols))
        };
        let frequency = settings.frequency;
        let sampled = profile.samples().saturating_add(profile.lost());
        let completed = unwinder.completed();
        let mut comments = comments(&event, &stats, &profile, window, frequency, completed);
        comments.push(scope(cgroup.as_deref()));
        comments.extend(crate::gostack::comment(&go, unwinder.resumed()));
        comments.extend(coverage.comment(sampled, frequency));
        let system_warning = system_refused.map(|why| system_warning(&why, &coverage));
        comments.extend(system_warning.clone());
        let meta = Meta {
            start: window.start,
            duration: window.duration,
            comments,
        };
        let mut summary = summary(&profile, frequency, &event, window, completed);
        if let Some(hint) = lost_hint(profile.lost(), sampled, frequency) {
            summary = format!("{summary}\nwarning: {hint}");
        }
        for warning in coverage
            .warning(sampled, frequency)
            .into_iter()
            .chain(system_warning)
        {
            summary = format!("{summary}\nwarning: {warning}");
        }
        let has_samples = profile.samples() > 0;
        Ok(Finished {
            profile: profile.build(unwinder.modules(), kernel_names.as_ref(), &meta),
            summary,
            title: format!("rprof-agent: PID {}, {}", window.pid, event),
            has_samples,
        })
    }
}

/// What to do when the kernel dropped samples because the agent did not drain its rings in
/// time: at high rates the rings fill faster, and a smaller stack copy makes each record smaller.
fn lost_hint(lost: u64, sampled: u64, frequency: u64) -> Option<String> {
    (lost > 0).then(|| {
        format!(
            "{} of {sampled} lost: the kernel's ring filled before the agent read it; lower -F \
             (now {frequency} Hz) or --stack-size, or give the agent more CPU",
            crate::wording::count(lost, "sample")
        )
    })
}

/// Why system time is missing and how much of the target's CPU time that is, with the remedy.
fn system_warning(why: &str, coverage: &CpuCoverage) -> String {
    let hidden = coverage
        .unsampled_system()
        .map(|(system, share)| {
            format!(
                "{:.2}s of the target's CPU time ({:.0}%, its system time) is in no sample",
                system.as_secs_f64(),
                100.0 * share
            )
        })
        .unwrap_or_else(|| "its system time is in no sample".to_owned());
    format!("{why}: {hidden}; grant CAP_PERFMON or set kernel.perf_event_paranoid ≤ 1 to see it")
}

/// How the target's threads were sampled.
fn scope(cgroup: Option<&str>) -> String {
    match cgroup {
        Some(path) => format!(
            "scope: per-CPU events of the target's own cgroup {path} (short threads sampled in \
             proportion to their CPU time)"
        ),
        None => "scope: per-thread events (each new thread starts its sampling period afresh)"
            .to_owned(),
    }
}

/// The profile's comments: event, losses, threads.
fn comments(
    event: &str,
    stats: &SamplerStats,
    profile: &CpuStacks,
    window: &Window,
    frequency: u64,
    completed: u64,
) -> Vec<String> {
    vec![
        provenance(window),
        format!("event: {event} at {frequency} Hz"),
        format!(
            "samples: {}, lost: {}, truncated stacks: {}, stacks deeper than their copy \
             completed from the thread's live stack (its frames at the copy's end unchanged): \
             {completed}",
            profile.samples(),
            profile.lost(),
            profile.truncated()
        ),
        format!(
            "threads: {} attached, {} inherited",
            stats.threads_attached, stats.threads_inherited
        ),
        stats.drops(),
    ]
}

/// Hands one record to the unwinder thread, a sample with the goroutine stack copied with it.
fn forward(record: Record<'_>, pipeline: &Pipeline<CpuStacks>, go: Option<&mut GoStacks>) {
    match record {
        Record::Sample(sample) => {
            let switched = go.map_or_else(Vec::new, |go| go.take(sample.tid, sample.time));
            pipeline.send(Event::sample(&sample, ()).with_switched(switched))
        }
        other => Event::side_band(&other, |event| pipeline.send(event)),
    }
}

/// The summary line, so a result is visible without any other tool.
fn summary(
    profile: &CpuStacks,
    frequency: u64,
    event: &str,
    window: &Window,
    completed: u64,
) -> String {
    let why = window.outcome.note();
    let truncated_pct = percent(profile.truncated(), profile.samples());
    let completed = if completed > 0 {
        format!(", {completed} deeper than their copy completed from live memory")
    } else {
        String::new()
    };
    format!(
        "{} samples over {:.1}s{why} ({event}, {} Hz), {} lost, {} truncated stacks ({truncated_pct:.1}%){completed}, {} distinct stacks",
        profile.samples(),
        window.duration.as_secs_f64(),
        frequency,
        profile.lost(),
        profile.truncated(),
        profile.distinct_stacks(),
    )
}
