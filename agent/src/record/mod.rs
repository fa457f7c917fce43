//! `rprof-agent record`: a CPU profile of a running process or a launched command.
//!
//! Pipeline: the sampler's ring buffers are drained on this thread; raw samples go to the
//! unwinder thread ([`pipeline`]), which aggregates stacks online; at the end the aggregate is
//! symbolized into a pprof profile (or a flamegraph) and written atomically.

mod pipeline;
mod progress;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use crate::cli::{RecordArgs, RecordFormat};
use crate::kallsyms::KernelSymbols;
use crate::profile::{write_atomically, CpuProfile, CpuProfileMeta};
use crate::sampler::{Record, Sampler, SamplerConfig};
use crate::stop::StopFlag;
use crate::target::Target;
use crate::unwind::{ModuleSet, Registers, StackUnwinder};
use pipeline::{Event, Pipeline};
use progress::Progress;

/// How long one wait for ring-buffer data may block: bounds how late we notice Ctrl-C, the end
/// of the window, or the target's exit.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often new threads are looked for (threads created by sampled threads are inherited by
/// the kernel; this catches the rest).
const THREAD_RESCAN_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(args: &RecordArgs, stop: &StopFlag) -> Result<()> {
    let mut target = match args.pid {
        Some(pid) => Target::attach(pid)?,
        None => Target::launch(&args.command)?,
    };
    let pid = target.pid();
    let config = SamplerConfig {
        pid,
        frequency: args.frequency,
        stack_bytes: args
            .stack_size
            .unwrap_or(crate::sampler::DEFAULT_STACK_BYTES),
        kernel: args.kernel,
    };
    let mut sampler = Sampler::open(&config)?;
    let symbolizer = Arc::new(Symbolizer::new());
    let modules = ModuleSet::load(pid, symbolizer)
        .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
    let pipeline = Pipeline::start(pid, StackUnwinder::new(modules))
        .context("cannot start the unwinder thread")?;
    let event = sampler.event_kind().to_string();

    let started = SystemTime::now();
    let clock = Instant::now();
    target.start();
    let outcome = sample_until_done(
        args,
        stop,
        &mut target,
        &mut sampler,
        &pipeline,
        clock,
        &event,
    );
    let duration = clock.elapsed();
    drain(&mut sampler, &pipeline);
    let stats = sampler.stats();
    drop(sampler);
    target.finish();

    let (profile, unwinder) = pipeline.finish()?;
    let kernel_symbols = if args.kernel {
        KernelSymbols::load()
    } else {
        None
    };
    let meta = CpuProfileMeta {
        frequency: args.frequency,
        start: started,
        duration,
        comments: vec![
            format!(
                "rprof-agent {} record, PID {pid}",
                env!("CARGO_PKG_VERSION")
            ),
            format!("event: {event} at {} Hz", args.frequency),
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
        ],
    };
    let pprof = profile.build(unwinder.modules(), kernel_symbols.as_ref(), &meta);
    let output = output_path(args, pid);
    let bytes = match args.format {
        RecordFormat::Pprof => rprof_proto::encode_gzip(&pprof),
        RecordFormat::Flamegraph => {
            crate::flamegraph::svg(&pprof, &format!("rprof-agent: PID {pid}, {event}"))?
        }
    };
    write_atomically(&output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    report(&output, &profile, &meta, &event, outcome, &pprof, args.top);
    Ok(())
}

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Elapsed,
    Interrupted,
    TargetExited,
}

fn sample_until_done(
    args: &RecordArgs,
    stop: &StopFlag,
    target: &mut Target,
    sampler: &mut Sampler,
    pipeline: &Pipeline,
    clock: Instant,
    event: &str,
) -> Outcome {
    let window = Duration::from_secs(args.seconds);
    let progress = Progress::new(target.pid(), args.seconds, event);
    let mut last_rescan = Instant::now();
    let outcome = loop {
        if stop.is_set() {
            break Outcome::Interrupted;
        }
        if clock.elapsed() >= window {
            break Outcome::Elapsed;
        }
        if !target.alive() {
            break Outcome::TargetExited;
        }
        if let Err(err) = sampler.wait(POLL_INTERVAL) {
            tracing::debug!("wait for samples: {err}");
            std::thread::sleep(POLL_INTERVAL);
        }
        drain(sampler, pipeline);
        if last_rescan.elapsed() >= THREAD_RESCAN_INTERVAL {
            last_rescan = Instant::now();
            if let Err(err) = sampler.refresh_threads() {
                tracing::debug!("thread rescan: {err}");
            }
        }
        progress.update(clock.elapsed(), pipeline.counters());
    };
    progress.finish();
    outcome
}

/// Hands every available record to the unwinder thread.
fn drain(sampler: &mut Sampler, pipeline: &Pipeline) {
    sampler.drain(&mut |record| {
        let event = match record {
            Record::Sample(s) => {
                let regs = if s.user_regs_available {
                    Registers {
                        ip: s.ip,
                        sp: s.sp,
                        bp: s.bp,
                    }
                } else {
                    Registers {
                        ip: 0,
                        sp: 0,
                        bp: 0,
                    }
                };
                Event::Sample {
                    tid: s.tid,
                    regs,
                    stack: s.stack.to_vec(),
                    kernel: s.kernel_callchain.to_vec(),
                }
            }
            Record::Lost { count } => Event::Lost(count),
            Record::Comm { tid, name, .. } => Event::ThreadName {
                tid,
                name: name.to_string(),
            },
            Record::Mmap { exec: true, .. } => Event::CodeMapped,
            _ => return,
        };
        pipeline.send(event);
    });
}

fn output_path(args: &RecordArgs, pid: u32) -> PathBuf {
    if let Some(path) = &args.output {
        return path.clone();
    }
    let extension = match args.format {
        RecordFormat::Pprof => "pb.gz",
        RecordFormat::Flamegraph => "svg",
    };
    PathBuf::from(format!(
        "rprof-cpu-{pid}-{}.{extension}",
        crate::timestamp::compact_utc(SystemTime::now())
    ))
}

/// One summary line, then the top functions, so a result is visible without any other tool.
fn report(
    output: &std::path::Path,
    profile: &CpuProfile,
    meta: &CpuProfileMeta,
    event: &str,
    outcome: Outcome,
    pprof: &rprof_proto::Profile,
    top: usize,
) {
    let why = match outcome {
        Outcome::Elapsed => "",
        Outcome::Interrupted => " (stopped early)",
        Outcome::TargetExited => " (target exited)",
    };
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

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
