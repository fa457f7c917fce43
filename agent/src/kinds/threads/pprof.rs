//! The thread dump as a pprof profile: a `<sample_type>/count` sample per distinct stack and
//! label set (thread state and name), so `go tool pprof -traces` groups "17 threads sleeping in
//! pthread_cond_wait".

use std::time::{Duration, SystemTime};

use rprof_proto::Profile;

use super::dump::ThreadDump;
use crate::profile::{Meta, PseudoFrame, Shape, StackAggregate, StackSample};

/// `sample_type` names the count: `threads` for the verb, `goroutine` where a scraper files
/// the snapshot as Go's goroutine profile.
pub fn build(dump: &ThreadDump, taken: SystemTime, sample_type: &'static str) -> Profile {
    let mut stacks = StackAggregate::new(false);
    for thread in &dump.threads {
        stacks.names().set(thread.info.tid, &thread.info.name);
        let state = thread.info.state.to_string();
        let root = if !thread.has_stack {
            Some(PseudoFrame::NoStack)
        } else if thread.truncated {
            Some(PseudoFrame::Truncated)
        } else {
            None
        };
        let sample = StackSample {
            tid: thread.info.tid,
            kernel: &[],
            user: &thread.addresses,
            root,
            labels: &[("state", &state)],
        };
        stacks.add(&sample, &[1]);
    }
    let mut comments = vec![format!(
        "rprof-agent thread snapshot of PID {}, pause {} us",
        dump.pid,
        dump.pause.as_micros()
    )];
    if let Some(why) = &dump.stack_error {
        comments.push(format!("stacks unavailable: {why}"));
    }
    let meta = Meta {
        start: taken,
        duration: Duration::ZERO,
        comments,
    };
    let count = (sample_type, "count");
    let shape = Shape {
        sample_types: std::slice::from_ref(&count),
        period_type: count,
        period: 1,
        default_sample_type: None,
    };
    stacks.build(&dump.modules, None, &shape, &meta)
}
