//! The endpoints of the snapshot kind (`goroutine`, `threads`): the thread snapshot (`threads`
//! verb), in Go's three forms — `debug=0` pprof (`goroutine/count`, or `threads/count` under
//! `/threads`: the endpoint's sample type), `debug=1` counts by stack, `debug=2` every thread
//! with its stack.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::response::Response;
use rprof_symbolizer::Symbolizer;

use super::errors::PprofError;
use super::legacy_text::{self, entry_offset, FrameLine, StackRecord};
use super::params::Params;
use super::procs::Incarnation;
use super::responses;
use super::state::SharedState;
use crate::cli::ThreadsFormat;
use crate::frames::NamedFrame;
use crate::kinds::threads::{render, take_dump, DumpedThread, ThreadDump};
use crate::snapshot::SnapshotOptions;
use crate::unwind::ModuleSet;

/// Which path asked: the same snapshot, under the path's name and sample type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpProfile {
    pub name: &'static str,
    pub sample_type: &'static str,
}

/// A rendered snapshot: a pprof file or text.
enum Rendered {
    Profile(Vec<u8>),
    Text(Vec<u8>),
}

pub async fn serve(
    state: SharedState,
    profile: DumpProfile,
    params: Params,
) -> Result<Response, PprofError> {
    if params.has_seconds() {
        // Go answers delta requests for goroutine; a thread snapshot has no delta form here.
        return Err(PprofError::bad_request(
            r#""seconds" parameter is not supported for this profile type"#,
        ));
    }
    let debug = params.debug();
    let target = state.target.current()?;
    let _turn = state.limits.snapshots.enter().await?;
    let symbolizer = Arc::clone(&state.symbolizer);
    let options = SnapshotOptions {
        nonblocking: state.settings.nonblocking,
        ..SnapshotOptions::default()
    };
    let rendered =
        tokio::task::spawn_blocking(move || snapshot(target, symbolizer, &options, profile, debug))
            .await??;
    Ok(match rendered {
        Rendered::Profile(bytes) => responses::profile(profile.name, bytes),
        Rendered::Text(text) => responses::text(text),
    })
}

/// Takes the snapshot and renders it in the form `debug` asks for.
fn snapshot(
    target: Incarnation,
    symbolizer: Arc<Symbolizer>,
    options: &SnapshotOptions,
    profile: DumpProfile,
    debug: i64,
) -> Result<Rendered, PprofError> {
    let taken = SystemTime::now();
    let dump = take_dump(target.pid, Arc::clone(&symbolizer), options);
    symbolizer.release_pages();
    let dump = dump.map_err(|err| {
        if target.is_alive() {
            PprofError::from_chain("could not take a thread snapshot", &err)
        } else {
            PprofError::unavailable(format!("the target (PID {}) exited", target.pid))
        }
    })?;
    if let Some(why) = &dump.stack_error {
        tracing::warn!(
            "thread snapshot of PID {} without stacks: {why}",
            target.pid
        );
    }
    let rendered = match debug {
        i64::MIN..=0 => Rendered::Profile(pprof(&dump, profile, taken)?),
        1 => Rendered::Text(counts_by_stack(&dump, profile).into_bytes()),
        _ => Rendered::Text(full_dump(&dump, taken)?),
    };
    Ok(rendered)
}

fn pprof(
    dump: &ThreadDump,
    profile: DumpProfile,
    taken: SystemTime,
) -> Result<Vec<u8>, PprofError> {
    render(dump, ThreadsFormat::Pprof, taken, profile.sample_type)
        .map_err(|err| PprofError::from_chain("could not encode the snapshot", &err))
}

fn full_dump(dump: &ThreadDump, taken: SystemTime) -> Result<Vec<u8>, PprofError> {
    render(dump, ThreadsFormat::Text, taken, "threads")
        .map_err(|err| PprofError::from_chain("could not render the snapshot", &err))
}

/// Go's `debug=1`: threads grouped by identical stack.
fn counts_by_stack(dump: &ThreadDump, profile: DumpProfile) -> String {
    let mut groups: HashMap<&[u64], (usize, &DumpedThread)> = HashMap::new();
    let mut stackless = 0;
    for thread in &dump.threads {
        if thread.addresses.is_empty() {
            stackless += 1;
            continue;
        }
        groups
            .entry(thread.addresses.as_slice())
            .or_insert((0, thread))
            .0 += 1;
    }
    let records = groups
        .into_values()
        .map(|(count, thread)| stack_record(count, thread, &dump.modules))
        .collect();
    let mut notes = Vec::new();
    if stackless > 0 && dump.stack_error.is_none() {
        notes.push(format!(
            "{} without a captured stack (exited, or neither blocked, ran nor stopped in time)",
            crate::wording::count(stackless as u64, "thread")
        ));
    }
    if let Some(why) = &dump.stack_error {
        notes.push(format!("stacks unavailable: {why}"));
    }
    legacy_text::render(profile.name, dump.threads.len(), records, &notes)
}

fn stack_record(count: usize, thread: &DumpedThread, modules: &ModuleSet) -> StackRecord {
    let pcs = thread
        .addresses
        .iter()
        .map(|&a| legacy_text::pc(a))
        .collect();
    StackRecord {
        count,
        pcs,
        frames: thread
            .frames
            .iter()
            .map(|frame| frame_line(frame, modules))
            .collect(),
    }
}

fn frame_line(frame: &NamedFrame, modules: &ModuleSet) -> FrameLine {
    let location = match (&frame.file, frame.line) {
        (Some(file), Some(line)) => Some(format!("{file}:{line}")),
        _ => frame.module.clone(),
    };
    FrameLine {
        pc: frame.address,
        function: frame.function.clone(),
        offset: entry_offset(modules, frame.address),
        location,
    }
}
