//! `rprof-agent record`: profiles of any recorded kinds (see [`crate::kinds`]) of running
//! processes or of a launched command and the processes it starts, taken in one window.
//!
//! Per process and profile: its recording's trigger is drained (the first one's on this
//! thread, any other's on a thread of its own: see [`window`]); raw samples go to that
//! recording's unwinder thread, which aggregates stacks online (see [`crate::recording`]); at
//! the end each aggregate is symbolized into a pprof profile, the processes' profiles of one
//! kind are merged into one ([`combine`]), and each is written atomically (or as a flamegraph).

mod combine;
mod descendants;
mod followed;
mod output;
mod progress;
mod window;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use crate::cli::{RecordArgs, RecordFormat};
use crate::kinds::Kind;
use crate::profile::write_output;
use crate::recording::{Finished, Outcome, Recording, Window};
use crate::stop::StopFlag;
use combine::{combine, ProcessFinished};
use descendants::Descendants;
use followed::{Followed, Opener};
use window::Session;

pub fn run(args: &RecordArgs, stop: &StopFlag) -> Result<()> {
    let kinds = profile_kinds(args);
    let (several, launched) = (kinds.len() > 1, !args.command.is_empty());
    output::check_writable(args.output.as_deref(), several, launched)?;
    let opener = Opener {
        args,
        kinds,
        symbolizer: Arc::new(Symbolizer::new()),
    };
    let processes = opener.roots()?;
    let follow_children = (launched && !args.no_children) || args.children;
    // Whenever there may be several processes, every sample says which it is of.
    let labelled = follow_children || args.pid.len() + args.process.len() > 1;
    let pid = processes.first().map_or(0, Followed::pid);
    let descendants =
        follow_children.then(|| Descendants::new(processes.iter().map(Followed::pid)));
    let mut session = Session {
        opener: &opener,
        processes,
        descendants,
    };

    let start = SystemTime::now();
    let clock = Instant::now();
    for process in &mut session.processes {
        process.target.start()?;
    }
    let outcome = session.record(args, stop, clock);
    let duration = clock.elapsed();
    let mut processes = session.processes;
    for process in &mut processes {
        for (_, recording) in &mut process.recordings {
            recording.stop();
        }
    }
    // What the command started is ended before the command: a shell ended first would leave
    // its children running. Children were found after their parents: last first.
    for process in processes.iter_mut().rev() {
        process.target.finish();
    }

    // Named after what was asked for: a profile left out does not rename the others.
    let stamp = crate::timestamp::compact_utc(SystemTime::now());
    let window = |process: &Followed| Window {
        pid: process.pid(),
        start,
        duration,
        // A process that exited before the others says so in its own summary.
        outcome: if process.exited {
            Outcome::TargetExited
        } else {
            outcome
        },
    };
    for &kind in &opener.kinds {
        let Some(finished) = finish(kind, &mut processes, &window, labelled)? else {
            continue;
        };
        let output = output::path(
            args.output.as_deref(),
            kind.name,
            several,
            args.format,
            pid,
            &stamp,
        );
        write(finished, &output, args)?;
    }
    Ok(())
}

/// The profile of `kind`: the one process's as it is, or every process's in one, labelled with
/// its process. None when no process has one. A process whose profile cannot be built is an
/// error alone; among several (`labelled`), it is left out, in one line.
fn finish(
    kind: &Kind,
    processes: &mut [Followed],
    window: &dyn Fn(&Followed) -> Window,
    labelled: bool,
) -> Result<Option<Finished>> {
    let mut parts = Vec::new();
    for process in processes {
        let Some(recording) = take_recording(process, kind) else {
            continue;
        };
        match recording.finish(&window(process)) {
            Ok(finished) => parts.push(ProcessFinished {
                pid: process.pid(),
                name: process.name.clone(),
                finished,
            }),
            Err(err) if labelled => eprintln!(
                "rprof-agent: the {} profile of PID {} is left out: {err:#}",
                kind.name,
                process.pid()
            ),
            Err(err) => return Err(err),
        }
    }
    Ok(match parts.len() {
        0 => None,
        1 if !labelled => Some(parts.remove(0).finished),
        _ => Some(combine(parts)),
    })
}

/// The process's recording of `kind`, taken out to be finished.
fn take_recording(process: &mut Followed, kind: &Kind) -> Option<Box<dyn Recording>> {
    let index = process
        .recordings
        .iter()
        .position(|(taken, _)| taken.name == kind.name)?;
    Some(process.recordings.remove(index).1)
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
