//! A thread dump: the snapshot's facts plus each thread's unwound, symbolized stack. The data the
//! `threads` verb and the sidecar's goroutine/threads endpoints format.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use crate::frames::{name_stack, NamedFrame};
use crate::process_identity::ProcessHandle;
use crate::snapshot::{
    take_snapshot, CaptureSource, SnapshotError, SnapshotOptions, StackCapture, ThreadInfo,
};
use crate::unwind::{ModuleSet, Registers, StackMemory, StackUnwinder, UnwindEnd};

/// One thread in a dump.
pub struct DumpedThread {
    pub info: ThreadInfo,
    /// Unwound lookup addresses, leaf first; empty when no stack was captured.
    pub addresses: Vec<u64>,
    pub frames: Vec<NamedFrame>,
    /// Whether a stack was captured for this thread at all.
    pub has_stack: bool,
    /// How it was captured.
    pub captured_by: Option<CaptureSource>,
    /// Whether unwinding stopped before the thread's root frame.
    pub truncated: bool,
}

/// Every thread of a process, with stacks.
pub struct ThreadDump {
    pub pid: u32,
    pub pause: Duration,
    /// Why stacks are missing altogether (e.g. ptrace not permitted).
    pub stack_error: Option<String>,
    pub threads: Vec<DumpedThread>,
    pub modules: ModuleSet,
}

/// Takes the snapshot, then unwinds and symbolizes after the target runs again. Modules are
/// loaded before the pause so that no file I/O happens while the target is stopped.
pub fn take_dump(
    pid: u32,
    symbolizer: Arc<Symbolizer>,
    options: &SnapshotOptions,
) -> Result<ThreadDump> {
    // Held across the mappings read and the snapshot: both must be of this one process.
    let process = ProcessHandle::open(pid);
    crate::target::check_pid(pid)?;
    let modules = ModuleSet::load(pid, Arc::clone(&symbolizer));
    let snapshot = take_snapshot(pid, options)?;
    // Without ptrace access the mappings are hidden as the stacks are: the snapshot says why,
    // and names, states and CPU figures are still worth having.
    let modules = match (modules, &snapshot.stack_error) {
        (Ok(modules), _) => modules,
        (Err(_), Some(_)) => ModuleSet::empty(pid, symbolizer),
        (Err(err), None) => {
            return Err(err).with_context(|| format!("cannot read the mappings of PID {pid}"))
        }
    };
    if !process.is_some_and(|process| process.is_alive()) {
        return Err(SnapshotError::Exited(pid).into());
    }
    let mut unwinder = StackUnwinder::new(modules);
    let threads = snapshot
        .threads
        .into_iter()
        .map(|info| {
            let capture = snapshot.stacks.iter().find(|s| s.tid == info.tid);
            dump_thread(&mut unwinder, info, capture)
        })
        .collect();
    Ok(ThreadDump {
        pid,
        pause: snapshot.pause,
        stack_error: snapshot.stack_error,
        threads,
        modules: unwinder.into_modules(),
    })
}

fn dump_thread(
    unwinder: &mut StackUnwinder,
    info: ThreadInfo,
    capture: Option<&StackCapture>,
) -> DumpedThread {
    let Some(capture) = capture else {
        return DumpedThread {
            info,
            addresses: Vec::new(),
            frames: Vec::new(),
            has_stack: false,
            captured_by: None,
            truncated: false,
        };
    };
    let regs = Registers {
        ip: capture.regs.ip,
        sp: capture.regs.sp,
        bp: capture.regs.bp,
    };
    let mut addresses = Vec::new();
    let end = unwinder.unwind(
        regs,
        &StackMemory::new(regs.sp, &capture.stack),
        &[],
        &mut addresses,
    );
    let frames = name_stack(unwinder.modules(), &addresses);
    DumpedThread {
        info,
        addresses,
        frames,
        has_stack: true,
        captured_by: Some(capture.source),
        truncated: end == UnwindEnd::Truncated,
    }
}

impl ThreadDump {
    /// Thread counts by state, most common first, e.g. [("sleeping", 12), ("running", 2)].
    pub fn state_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for thread in &self.threads {
            let state = thread.info.state.to_string();
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => counts.push((state, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }
}
