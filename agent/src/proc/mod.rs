//! Reading `/proc`: the one place that knows its file formats.
//!
//! The `procfs` crate parses what it can. Hand-written readers remain only where it falls short,
//! each saying why: listing task ids (procfs's task iterator opens every task directory),
//! per-thread files read in bulk with a size bound (`snapshot::procinfo`), and `status` files of
//! the target (procfs reads them as UTF-8 lines, and a thread name need not be UTF-8).
//!
//! The process being profiled is held by [`crate::process_identity::ProcessHandle`], which owns
//! its pidfd and its [`ProcDir`].

mod dir;
mod stat;
mod tasks;

pub use dir::ProcDir;
pub use stat::{is_exited, is_kernel_thread, parse_stat, process_stat};
pub use tasks::{task_ids, MAX_TASKS};
