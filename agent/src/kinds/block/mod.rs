//! The block kind — Go's block profile for native code: where threads wait on
//! synchronization (mutexes, rwlocks, condition variables, semaphores, joins, barriers: the
//! futex waits of glibc, C++ `std::`, Rust `std::sync` and Go's runtime), weighted by how long,
//! attributed to the waiting stack. `contentions/count`, `delay/nanoseconds`, label `wait` =
//! lock / condvar / other.
//!
//! How: context-switch sampling of the target's threads (see `kinds::waits`); waits that are
//! not on synchronization (I/O, sleep, poll) and preemptions are left out.

use anyhow::Result;

use super::waits::aggregate::View;
use super::waits::recording::WaitRecording;
use super::{Endpoint, Form, Kind, Source};
use crate::recording::{Recording, Request};

pub static KIND: Kind = Kind {
    name: "block",
    help: "Where threads wait on locks, condition variables and other synchronization, and \
           how long (contentions/count, delay/nanoseconds), as Go's block profile",
    go_name: "block",
    source: Source::Recorded(open),
    endpoints: &[Endpoint {
        name: "block",
        path: None,
        description: "Stack traces that led to blocking on synchronization primitives \
                      (mutexes, condition variables, semaphores, joins), recorded for the \
                      seconds GET parameter (default 30)",
        form: Form::Recorded,
    }],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(WaitRecording::open(
        "block",
        View::Block,
        request,
    )?))
}
