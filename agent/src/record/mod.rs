//! `rprof-agent record`: profiles of any recorded kinds (see [`crate::kinds`]) of a running
//! process or a launched command, taken in one window.
//!
//! Per profile: its recording's trigger is drained (the first profile's on this thread, any
//! other's on a thread of its own); raw samples go to that profile's unwinder thread, which
//! aggregates stacks online (see [`crate::recording`]); at the end each aggregate is
//! symbolized into a pprof profile (or a flamegraph) and written atomically.

mod output;
mod progress;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use crate::cli::{RecordArgs, RecordFormat};
use crate::kinds::Kind;
use crate::profile::write_output;
use crate::recording::{next_wait, Finished, Outcome, Recording, Request, Window};
use crate::stop::StopFlag;
use crate::target::Target;
use progress::Progress;

pub fn run(args: &RecordArgs, stop: &StopFlag) -> Result<()> {
    let (several, launched) = (profile_kinds(args).len() > 1, args.pid.is_none());
    output::check_writable(args.output.as_deref(), several, launched)?;
    let mut target = match args.pid {
        Some(pid) => Target::attach(pid)?,
        None => Target::launch(&args.command)?,
    };
    let pid = target.pid();
    let mut recordings = open_recordings(args, &target)?;

    let started = SystemTime::now();
    let clock = Instant::now();
    target.start()?;
    let outcome = record_window(args, stop, &mut target, &mut recordings, clock);
    let window = Window {
        pid,
        start: started,
        duration: clock.elapsed(),
        outcome,
    };
    for (_, recording) in &mut recordings {
        recording.stop();
    }
    target.finish();

    // Named after what was asked for: a profile left out does not rename the others.
    let several = profile_kinds(args).len() > 1;
    let stamp = crate::timestamp::compact_utc(SystemTime::now());
    for (kind, recording) in recordings {
        let output = output::path(
            args.output.as_deref(),
            kind.name,
            several,
            args.format,
            pid,
            &stamp,
        );
        write(recording.finish(&window)?, &output, args)?;
    }
    Ok(())
}

/// Writes a profile in the format asked for, then says so in one line, with the top functions
/// after it.
fn write(finished: Finished, output: &Path, args: &RecordArgs) -> Result<()> {
    let bytes = match args.format {
        RecordFormat::Pprof => rprof_proto::encode_gzip(&finished.profile),
        RecordFormat::Flamegraph => crate::flamegraph::svg(&finished.profile, &finished.title)?,
    };
    let written = write_output(output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let mut report = format!("wrote {}: {}\n", output.display(), finished.summary);
    if args.top > 0 && finished.has_samples {
        report.push_str(&crate::top::table(
            &finished.profile,
            // The profile's own default (delay for block and mutex, wall time for wall).
            crate::top::sample_index(&finished.profile, None).unwrap_or(0),
            args.top,
        ));
    }
    // A profile sent to standard output keeps it to itself.
    if written.shares_stdout() {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    Ok(())
}

/// The profiles asked for, each once, in the order asked.
fn profile_kinds(args: &RecordArgs) -> Vec<&'static Kind> {
    let mut kinds: Vec<&'static Kind> = Vec::new();
    for &kind in &args.profile {
        if !kinds.iter().any(|k| k.name == kind.name) {
            kinds.push(kind);
        }
    }
    kinds
}

type Recordings = Vec<(&'static Kind, Box<dyn Recording>)>;

/// Starts every profile asked for. A profile that cannot be taken is an error when it is the
/// only one; next to others, it is reported and left out.
fn open_recordings(args: &RecordArgs, target: &Target) -> Result<Recordings> {
    let pid = target.pid();
    let kinds = profile_kinds(args);
    let symbolizer = Arc::new(Symbolizer::new());
    let program = target
        .is_launched()
        .then(|| args.command.first().map(String::as_str))
        .flatten();
    let request = Request {
        pid,
        program,
        frequency: args.frequency,
        stack_bytes: args
            .stack_size
            .unwrap_or(crate::sampler::DEFAULT_STACK_BYTES),
        kernel: args.kernel,
        exact: args.exact,
        symbolizer: &symbolizer,
    };
    let mut recordings: Recordings = Vec::new();
    for &kind in &kinds {
        let opened = kind.open(&request);
        match opened {
            Ok(recording) => recordings.push((kind, recording)),
            Err(err) if kinds.len() > 1 => {
                eprintln!(
                    "rprof-agent: the {} profile is unavailable, recording the others: {err:#}",
                    kind.name
                );
            }
            Err(err) => return Err(err),
        }
    }
    Ok(recordings)
}

/// Drains every recording until the window ends, Ctrl-C, or the target exits.
fn record_window(
    args: &RecordArgs,
    stop: &StopFlag,
    target: &mut Target,
    recordings: &mut Recordings,
    clock: Instant,
) -> Outcome {
    let labels: Vec<String> = recordings.iter().map(|(_, r)| r.label()).collect();
    let Some(((_, primary), others)) = recordings.split_first_mut() else {
        return Outcome::Elapsed;
    };
    let window = Duration::from_secs(args.seconds);
    let progress = Progress::new(target.pid(), args.seconds, &labels.join(", "));
    let done = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        for (_, other) in others.iter_mut() {
            let done = &done;
            scope.spawn(move || {
                while !done.load(Ordering::Acquire) {
                    other.pump(next_wait(window.saturating_sub(clock.elapsed())));
                }
            });
        }
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
            primary.pump(next_wait(window.saturating_sub(clock.elapsed())));
            progress.update(clock.elapsed(), &primary.figures());
        };
        done.store(true, Ordering::Release);
        // The other kinds' threads may be waiting on their rings: end those waits now.
        crate::sampler::stop_waiting();
        outcome
    });
    progress.finish();
    outcome
}
