//! The threadcreate profile: where a process creates its threads.
//!
//! For every thread created while recording, the profile holds the full user stack of the
//! thread that created it, at the moment of creation, aggregated by stack (as Go's
//! `threadcreate` profile: `threadcreate/count`, period 1). Next to it, the churn: how many of
//! those threads also exited within the window.
//!
//! # Mechanism
//!
//! A uprobe perf event on the entry of each thread-creation function ([`CREATION_FUNCTIONS`]:
//! `pthread_create` in every mapped file that defines it, `runtime.newosproc` for Go), opened
//! through the uprobe PMU with `perf_event_open`, samples every hit with the user registers
//! and a copy of the user stack; the CPU profile's unwinder turns that into the creating stack
//! (unwind tables describe a function's entry like any other instruction). Why this way:
//!
//! - it needs only CAP_PERFMON: no tracefs mount (the `sched_process_fork` tracepoint and
//!   tracefs uprobes need one, and leave global state behind), no BPF (CAP_BPF, a loader);
//! - it never stops the target (ptrace's `PTRACE_O_TRACECLONE` stops it at every clone) and
//!   the agent writes nothing into it: the kernel places the breakpoint, in a private copy of
//!   the page, and removes it when the event is closed, even if the agent is killed;
//! - it costs the target nothing while it creates no threads, and one trap plus a stack copy
//!   per creation otherwise;
//! - polling `/proc/PID/task` would miss short-lived threads and has no stacks.
//!
//! The probes are per-CPU events for every task, and the target's threads get no events of
//! their own (see `sampler/uprobe.rs`): an inherited uprobe event makes thread creation fail in
//! the target, each uprobe event takes the kernel ~80 ms to close, and any per-thread event
//! makes every thread creation and exit in the target costlier. So other processes that map
//! the same file (libc, for `pthread_create`) hit the breakpoint too while recording, and the
//! probes' side-band records (thread creation and exit, for the churn; names; new mappings)
//! cover every task on the CPU: the sampler keeps the target's and drops the rest.
//!
//! Here: the kind ([`KIND`]), finding the functions to probe ([`probes`], [`symbols`]), the
//! recording ([`recording`]), its aggregate ([`aggregate`]) and the churn ([`churn`]).

mod aggregate;
pub mod churn;
pub mod probes;
mod recording;
pub mod symbols;

pub use churn::{Churn, ChurnSummary};
pub use probes::{probes_of_command, probes_of_process, ProbePoint, CREATION_FUNCTIONS};
pub use symbols::{find_functions, FunctionSymbol};

use super::{Endpoint, Form, Kind, Source};

pub static KIND: Kind = Kind {
    name: "threadcreate",
    help: "The stacks that created threads in the window (threadcreate/count), and the churn",
    go_name: "threadcreate",
    source: Source::Recorded(recording::open),
    endpoints: &[Endpoint {
        name: "threadcreate",
        path: None,
        description: "Stack traces that led to the creation of new OS threads, recorded for the \
                      seconds GET parameter (default 30): creations before the request cannot \
                      be seen from outside the process",
        form: Form::Recorded,
    }],
};
