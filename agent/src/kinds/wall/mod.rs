//! The wall kind — fgprof's wall-clock profile for native code: every thread's time, on the
//! CPU (CPU-time samples) and off it (context-switch sampling: I/O, poll, sleep, locks,
//! condition variables, page faults), in one profile. Label `state` = on-cpu / off-cpu and,
//! off the CPU, `wait` = lock / condvar / io / poll / sleep / other: `-tagfocus state=off-cpu`
//! is the off-CPU profile. Threads waiting through the whole window show too.

use anyhow::Result;

use super::waits::aggregate::View;
use super::waits::recording::WaitRecording;
use super::{Endpoint, Form, Kind, Source};
use crate::recording::{Recording, Request};

pub static KIND: Kind = Kind {
    name: "wall",
    help: "Every thread's wall-clock time, on and off the CPU (samples/count, \
           wall/nanoseconds; labels state and wait), as fgprof",
    go_name: "wall",
    source: Source::Recorded(open),
    endpoints: &[
        Endpoint {
            name: "wall",
            path: None,
            description: "Wall-clock profile (on-CPU and off-CPU time together, as fgprof), \
                      recorded for the seconds GET parameter (default 30); -tagfocus \
                      state=off-cpu shows the off-CPU time alone",
            form: Form::Recorded,
        },
        Endpoint {
            name: "fgprof",
            path: Some("/debug/fgprof"),
            description: "fgprof's endpoint: the wall-clock profile for the seconds GET \
                      parameter (default 30)",
            form: Form::Window,
        },
    ],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    let cpu_period = 1_000_000_000 / i64::try_from(request.frequency.max(1)).unwrap_or(i64::MAX);
    let view = View::Wall { cpu_period };
    Ok(Box::new(WaitRecording::open("wall", view, request)?))
}
