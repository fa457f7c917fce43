//! `rprof-agent threads`: every thread of a process with its state and symbolized stack — the
//! analog of Go's goroutine dump — as text, JSON or pprof.
//!
//! The target is stopped only while registers and stacks are copied (see [`crate::snapshot`]);
//! unwinding and symbolization happen after it runs again.

mod dump;
mod json;
mod pprof;
mod text;

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

pub use dump::{take_dump, DumpedThread, ThreadDump};

use crate::cli::{ThreadsArgs, ThreadsFormat};
use crate::profile::write_output;
use crate::snapshot::SnapshotOptions;

pub fn run(args: &ThreadsArgs) -> Result<()> {
    let options = SnapshotOptions {
        nonblocking: args.nonblocking,
        ..SnapshotOptions::default()
    };
    let taken = SystemTime::now();
    let dump = take_dump(args.pid, Arc::new(Symbolizer::new()), &options)?;
    if let Some(why) = &dump.stack_error {
        eprintln!("rprof-agent: warning: no stacks: {why}");
    }
    let bytes = render(&dump, args.format, taken)?;
    match &args.output {
        Some(path) => write_output(path, &bytes)
            .map(drop)
            .with_context(|| format!("cannot write {}", path.display())),
        None if args.format == ThreadsFormat::Pprof => {
            let path = std::path::PathBuf::from(format!(
                "rprof-threads-{}-{}.pb.gz",
                args.pid,
                crate::timestamp::compact_utc(taken)
            ));
            write_output(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}: {} threads", path.display(), dump.threads.len());
            Ok(())
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .context("cannot write to stdout"),
    }
}

/// The dump in one of the three formats.
pub fn render(dump: &ThreadDump, format: ThreadsFormat, taken: SystemTime) -> Result<Vec<u8>> {
    Ok(match format {
        ThreadsFormat::Text => text::render(dump).into_bytes(),
        ThreadsFormat::Json => {
            let mut json = json::render(dump)?;
            json.push('\n');
            json.into_bytes()
        }
        ThreadsFormat::Pprof => rprof_proto::encode_gzip(&pprof::build(dump, taken)),
    })
}
