//! `rprof-agent threads`: the thread snapshot kind ([`crate::kinds::threads`]) taken once and
//! written as text, JSON or pprof.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use crate::cli::{ThreadsArgs, ThreadsFormat};
use crate::kinds::threads::{render, take_dump};
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
    let bytes = render(&dump, args.format, taken, "threads")?;
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
            let threads = crate::wording::count(dump.threads.len() as u64, "thread");
            println!("wrote {}: {threads}", path.display());
            Ok(())
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .context("cannot write to stdout"),
    }
}
