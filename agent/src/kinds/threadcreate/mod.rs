//! The threadcreate profile: where a process creates its threads.
//!
//! For every thread created while recording, the profile holds the full user stack of the
//! thread that created it, at the moment of creation, aggregated by stack (as Go's
//! `threadcreate` profile: `threadcreate/count`, period 1). Next to it, the churn: how many of
//! those threads also exited within the window.
//!
//! # Mechanism
//!
//! A uprobe on the entry of each thread-creation function ([`CREATION_FUNCTIONS`]:
//! `pthread_create` in every mapped file that defines it, `runtime.newosproc` for Go) samples
//! every hit with the user registers and a copy of the user stack; the CPU profile's unwinder
//! turns that into the creating stack (unwind tables describe a function's entry like any
//! other instruction). Why uprobes: they never stop the target (ptrace's
//! `PTRACE_O_TRACECLONE` stops it at every clone), the agent writes nothing into it (the kernel
//! places the breakpoint in a private copy of the page and removes it when the last event
//! closes, even if the agent is killed), they cost nothing while no thread is created, and
//! polling `/proc/PID/task` would miss short-lived threads and has no stacks.
//!
//! The probes are opened one of two ways (`recording.rs`):
//!
//! - **Scoped to the target**, where the agent can write tracefs's `uprobe_events` (root,
//!   tracefs mounted): the probes are defined there (`crate::probes`) and opened as tracepoint
//!   events on every thread of the target, inherited by the threads it creates, next to
//!   per-thread events that tick rarely and carry the side-band records. Other processes
//!   mapping the same libc never trap, and nothing of theirs reaches the agent. The price:
//!   every thread the target creates gets copies of those events, and frees them at exit —
//!   ~35–40 µs per creation on this VM against ~2.5 µs per CPU (docs/BENCHMARKS.md): a loop
//!   creating empty threads flat out runs at a quarter of its speed; threads doing 100 µs of
//!   work showed no measurable drop.
//! - **Per CPU for every task**, through the uprobe PMU, otherwise (CAP_PERFMON is enough),
//!   or when `RPROF_THREADCREATE_PER_CPU` is set. A uprobe-PMU event cannot be inherited
//!   (thread creation would fail in the target: design-notes §8), so the target's threads get
//!   no events of their own (see `sampler/uprobe.rs`): other processes that map the same file
//!   hit the breakpoint too while recording, and the probes' side-band records cover every
//!   task on the CPU; the sampler keeps the target's and drops the rest (counted in the
//!   comments).
//!
//! Both follow a launched command (`record -- CMD`) through its exec: the probes name files
//! (the agent's libraries and the command's executable), not addresses, and per-thread
//! events stay with the thread that execs.
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
