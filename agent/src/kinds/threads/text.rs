//! The text thread dump, shaped like Go's `goroutine?debug=2`: a summary line, then one block per
//! thread separated by blank lines: a header with tid, quoted name and state, then
//! `function` / `\tfile:line` pairs, leaf first.

use std::fmt::Write;
use std::time::Duration;

use super::dump::{DumpedThread, ThreadDump};
use crate::frames::NamedFrame;
use crate::snapshot::ThreadState;

pub fn render(dump: &ThreadDump) -> String {
    let mut out = String::new();
    let states: Vec<String> = dump
        .state_counts()
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let _ = writeln!(
        out,
        "PID {}: {} ({}); paused {:.3} ms",
        dump.pid,
        crate::wording::count(dump.threads.len() as u64, "thread"),
        states.join(", "),
        dump.pause.as_secs_f64() * 1e3
    );
    if let Some(why) = &dump.stack_error {
        let _ = writeln!(out, "stacks unavailable: {why}");
    }
    for thread in &dump.threads {
        out.push('\n');
        render_thread(&mut out, thread, dump.stack_error.is_some());
    }
    out
}

fn render_thread(out: &mut String, thread: &DumpedThread, stacks_refused: bool) {
    let info = &thread.info;
    let _ = writeln!(
        out,
        "thread {} \"{}\" [{}, {}]:",
        info.tid,
        info.name,
        info.state,
        age(info.age)
    );
    let syscall = info.syscall.as_ref().map(|s| {
        s.name
            .map_or_else(|| format!("syscall {}", s.nr), str::to_string)
    });
    let _ = writeln!(
        out,
        "# wchan: {}  syscall: {}  cpu: user {:.2}s sys {:.2}s  switches: {} voluntary, {} involuntary",
        info.wchan.as_deref().unwrap_or("-"),
        syscall.as_deref().unwrap_or("-"),
        info.utime.as_secs_f64(),
        info.stime.as_secs_f64(),
        info.voluntary_ctxt_switches,
        info.nonvoluntary_ctxt_switches,
    );
    if !thread.has_stack {
        if info.state == ThreadState::Zombie {
            // A main thread that called pthread_exit while the others run.
            let _ = writeln!(
                out,
                "# exited: no stack left (the process runs on in its other threads)"
            );
        } else if !stacks_refused {
            let _ = writeln!(
                out,
                "# no stack captured (the thread neither blocked, ran nor stopped in time)"
            );
        }
        return;
    }
    for frame in &thread.frames {
        render_frame(out, frame);
    }
    if thread.truncated {
        let _ = writeln!(
            out,
            "...\n\t(stack truncated: unwinding stopped before the thread's root)"
        );
    }
}

fn render_frame(out: &mut String, frame: &NamedFrame) {
    let name = frame.function.as_deref().unwrap_or("?");
    let inlined = if frame.inlined { " (inlined)" } else { "" };
    let _ = writeln!(out, "{name}{inlined}");
    match (&frame.file, frame.line) {
        (Some(file), Some(line)) => {
            let _ = writeln!(out, "\t{file}:{line} pc={:#x}", frame.address);
        }
        _ => {
            let module = frame.module.as_deref().unwrap_or("?");
            let offset = frame
                .module_offset
                .map(|offset| format!("+{offset:#x}"))
                .unwrap_or_default();
            let _ = writeln!(out, "\t{module}{offset} pc={:#x}", frame.address);
        }
    }
}

/// "3 minutes", Go's style for how long a goroutine has waited.
fn age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..=59 => format!("{secs} seconds"),
        60..=3599 => format!("{} minutes", secs / 60),
        _ => format!("{} hours", secs / 3600),
    }
}
