//! The mutex kind — Go's mutex profile for native code: which critical sections make others
//! wait. The stack that released a lock (its `futex` wake, in `pthread_mutex_unlock`, Rust's
//! `Mutex::wake`, Go's runtime) is weighted by how long the thread it woke had waited:
//! `contentions/count`, `delay/nanoseconds`, attributed to the holder.
//!
//! How: the waits come from context-switch sampling, as for `block` (see `kinds::waits`);
//! each wakeup a thread of the target does is sampled at the kernel's `sched_waking`
//! tracepoint with the waker's user stack and the woken thread's id, and paired with the wait
//! it ended. Wakeups that end waits not on a lock (condition variables, pipes) are left out.
//! Needs tracefs (the tracepoint's id) and, like `block`, CAP_PERFMON.

use anyhow::Result;

use super::waits::aggregate::View;
use super::waits::recording::WaitRecording;
use super::{Endpoint, Form, Kind, Source};
use crate::recording::{Recording, Request};

pub static KIND: Kind = Kind {
    name: "mutex",
    help: "Which critical sections make other threads wait: the stacks that released a \
           contended lock, weighted by the waiters' delay, as Go's mutex profile",
    go_name: "mutex",
    source: Source::Recorded(open),
    endpoints: &[Endpoint {
        name: "mutex",
        path: None,
        description: "Stack traces of holders of contended mutexes (the releases that woke \
                      waiting threads, weighted by how long they had waited), recorded for the \
                      seconds GET parameter (default 30)",
        form: Form::Recorded,
    }],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(WaitRecording::open(
        "mutex",
        View::Mutex,
        request,
    )?))
}
