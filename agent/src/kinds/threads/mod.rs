//! The thread snapshot kind — the analog of Go's goroutine dump: every thread of a process with
//! its state and symbolized stack, as text, JSON or pprof; served as Go's `goroutine` (and as
//! `threads`) with `debug=0|1|2`.
//!
//! Registers and stacks are taken without stopping the target where possible, a thread at a time
//! with ptrace otherwise (see [`crate::snapshot`]); unwinding and symbolization happen after.

mod dump;
mod json;
mod pprof;
mod text;

use std::time::SystemTime;

use anyhow::Result;

pub use dump::{take_dump, DumpedThread, ThreadDump};

use super::{Endpoint, Form, Kind, Source};
use crate::cli::ThreadsFormat;

pub static KIND: Kind = Kind {
    name: "threads",
    help: "Every thread now: name, state, wait channel, syscall and stack (`rprof-agent threads`)",
    go_name: "goroutine",
    source: Source::Snapshot,
    endpoints: &[
        Endpoint {
            name: "goroutine",
            path: None,
            description: "Stack traces of all current threads (a native process's goroutines \
                          are its OS threads); debug=2 adds each thread's state, wait channel \
                          and system call",
            form: Form::Snapshot {
                sample_type: "goroutine",
            },
        },
        Endpoint {
            name: "threads",
            path: None,
            description: "The goroutine snapshot under its own sample type (threads/count)",
            form: Form::Snapshot {
                sample_type: "threads",
            },
        },
    ],
};

/// The dump in one of the three formats; `sample_type` names the pprof form's count.
pub fn render(
    dump: &ThreadDump,
    format: ThreadsFormat,
    taken: SystemTime,
    sample_type: &'static str,
) -> Result<Vec<u8>> {
    Ok(match format {
        ThreadsFormat::Text => text::render(dump).into_bytes(),
        ThreadsFormat::Json => {
            let mut json = json::render(dump)?;
            json.push('\n');
            json.into_bytes()
        }
        ThreadsFormat::Pprof => rprof_proto::encode_gzip(&pprof::build(dump, taken, sample_type)),
    })
}
