//! Reading `/proc`: the one place that knows its file formats.
//!
//! The `procfs` crate parses what it can. Hand-written readers remain only where it falls short,
//! each saying why: listing task ids (procfs's task iterator opens every task directory), the
//! target's `status` and `maps` (procfs reads them as UTF-8 lines and fails whole on a thread
//! name or mapped path that is not), and the per-thread files a snapshot reads in bulk with
//! size bounds (`snapshot::procinfo`).
//!
//! The process being profiled is held by [`crate::process_identity::ProcessHandle`], which owns
//! its pidfd and its [`ProcDir`].

mod bounded;
mod dir;
mod own;
mod stat;
mod tasks;

pub use bounded::{process_file, read_bounded, task_file, SMALL_FILE_LIMIT, STATUS_FILE_LIMIT};
pub use dir::ProcDir;
pub use own::{has_capability, in_initial_pid_namespace, pinned_bytes};
pub use stat::{is_exited, is_kernel_thread, parse_stat, process_stat, thread_state};
pub use tasks::task_ids;
