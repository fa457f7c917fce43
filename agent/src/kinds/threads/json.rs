//! The JSON thread dump, for scripts: `{"pid", "pause_us", "threads": [{tid, name, state, ...,
//! captured_by, frames}]}`; `pause_us` is the longest any thread was stopped (0: none was).

use serde::Serialize;

use super::dump::{DumpedThread, ThreadDump};
use crate::frames::NamedFrame;
use crate::snapshot::{CaptureSource, ThreadState};

#[derive(Serialize)]
struct Dump<'a> {
    pid: u32,
    pause_us: u128,
    stack_error: Option<&'a str>,
    threads: Vec<Thread<'a>>,
}

#[derive(Serialize)]
struct Thread<'a> {
    tid: u32,
    name: &'a str,
    state: ThreadState,
    wchan: Option<&'a str>,
    syscall: Option<Syscall<'a>>,
    utime_ms: u128,
    stime_ms: u128,
    voluntary_ctxt_switches: u64,
    nonvoluntary_ctxt_switches: u64,
    age_ms: u128,
    has_stack: bool,
    /// "blocked", "sampled" or "stopped": how the stack was taken.
    captured_by: Option<CaptureSource>,
    truncated: bool,
    frames: &'a [NamedFrame],
}

#[derive(Serialize)]
struct Syscall<'a> {
    nr: i64,
    name: Option<&'a str>,
    args: [u64; 6],
}

pub fn render(dump: &ThreadDump) -> serde_json::Result<String> {
    let doc = Dump {
        pid: dump.pid,
        pause_us: dump.pause.as_micros(),
        stack_error: dump.stack_error.as_deref(),
        threads: dump.threads.iter().map(thread).collect(),
    };
    serde_json::to_string_pretty(&doc)
}

fn thread(t: &DumpedThread) -> Thread<'_> {
    let info = &t.info;
    Thread {
        tid: info.tid,
        name: &info.name,
        state: info.state,
        wchan: info.wchan.as_deref(),
        syscall: info.syscall.as_ref().map(|s| Syscall {
            nr: s.nr,
            name: s.name,
            args: s.args,
        }),
        utime_ms: info.utime.as_millis(),
        stime_ms: info.stime.as_millis(),
        voluntary_ctxt_switches: info.voluntary_ctxt_switches,
        nonvoluntary_ctxt_switches: info.nonvoluntary_ctxt_switches,
        age_ms: info.age.as_millis(),
        has_stack: t.has_stack,
        captured_by: t.captured_by,
        truncated: t.truncated,
        frames: &t.frames,
    }
}
