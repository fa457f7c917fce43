//! Go's stack switches, followed at sample time.
//!
//! A Go thread runs the runtime's work (allocation slow paths, garbage collection, scheduling,
//! stack growth, vdso calls) on its system stack, g0, while the goroutine it works for waits on
//! its own stack. A CPU sample copies the stack the thread runs on: its unwind stops at the
//! switch, and by the time the agent unwinds the sample the goroutine has run on. So a BPF
//! program that runs with each sample (`agent/bpf/gostack.bpf.c`) copies the goroutine's saved
//! registers and stack then; [`capture`] loads it and reads what it sends, and [`pairing`]
//! hands each copy to the sample it was taken with, for the unwinder to continue on
//! ([`crate::unwind::SwitchedStack`]).

mod capture;
mod pairing;

use capture::{Captured, GoStackCapture};
use pairing::Pending;

use std::sync::Arc;

use crate::sampler::monotonic_ns;
use crate::unwind::{ModuleSet, SwitchedStack};

/// Set to `off` not to follow goroutine stacks (to measure what following them costs, or to
/// avoid loading a program), to `nosignals` not to follow Go's signal handlers (the program
/// older kernels take).
const SWITCH_OFF: &str = "RPROF_GO_STACKS";

/// Goroutine stacks of one Go process, copied with its samples and waiting for them.
pub struct GoStacks {
    capture: GoStackCapture,
    /// The program, to run with each sample.
    program: i32,
    pending: Pending,
    /// When the program's ring was last read (CLOCK_MONOTONIC ns): a sample stamped less than
    /// [`pairing::MAX_LAG_NS`] before it may have its copy still in the ring.
    drained_at: u64,
}

/// Why goroutine stacks are not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFollowed {
    /// The target is not a Go program: nothing to follow.
    NotGo,
    /// A Go program whose goroutines cannot be followed, and why.
    Unable(String),
}

impl NotFollowed {
    /// The profile's comment about it, if any.
    pub fn comment(&self) -> Option<String> {
        match self {
            NotFollowed::NotGo => None,
            NotFollowed::Unable(why) => Some(format!(
                "goroutine stacks: not followed ({why}); samples on Go's system stack end at \
                 the switch"
            )),
        }
    }
}

/// The profile's comment on goroutine stacks of a target that was (`followed`) or was not a
/// Go program whose stacks could be followed; `resumed` samples went on to their goroutine.
pub fn comment(followed: &Result<GoStacks, NotFollowed>, resumed: u64) -> Option<String> {
    match followed {
        Ok(go) => Some(go.comment(resumed)),
        Err(why) => why.comment(),
    }
}

impl GoStacks {
    /// For the target whose modules are `modules`, if its main executable is a Go program
    /// whose runtime's struct offsets are known (from its DWARF or its code); for a launched
    /// command, `program`, the executable it is about to exec, decides. For events that count
    /// every task on a CPU if `every_task` (the program then keeps only the target's
    /// overflows). Why not otherwise.
    pub fn for_target(
        modules: &ModuleSet,
        program: Option<&str>,
        every_task: bool,
    ) -> Result<GoStacks, NotFollowed> {
        let executable = match program {
            Some(program) => crate::launch::find_program(program)
                .and_then(|path| modules.symbolizer().load_file(path).ok()),
            None => modules
                .all()
                .iter()
                .find(|module| module.is_main)
                .map(|module| Arc::clone(&module.object)),
        };
        let go = executable
            .filter(|object| object.is_go())
            .ok_or(NotFollowed::NotGo)?;
        if std::env::var(SWITCH_OFF).is_ok_and(|value| value == "off") {
            return Err(NotFollowed::Unable(format!("{SWITCH_OFF}=off")));
        }
        let layout = go.go_runtime_layout().ok_or_else(|| {
            NotFollowed::Unable(
                "the runtime's struct offsets are neither in the Go binary's DWARF nor in the \
                 form this agent reads them from its code (a Go version before 1.17?)"
                    .to_owned(),
            )
        })?;
        let unable = |err: anyhow::Error| {
            tracing::debug!("goroutine stacks not followed: {err:#}");
            NotFollowed::Unable(crate::ebpf::in_one_line(&format!("{err:#}")))
        };
        let signals = std::env::var(SWITCH_OFF).map_or(true, |value| value != "nosignals");
        let tls_g = go.go_tls_g_offset();
        let capture = GoStackCapture::load(modules.pid(), &layout, tls_g, signals, every_task)
            .map_err(unable)?;
        let program = capture.program_fd().map_err(unable)?;
        Ok(GoStacks {
            capture,
            program,
            pending: Pending::default(),
            drained_at: 0,
        })
    }

    /// The program, to run with each sample ([`crate::sampler::SamplerConfig::on_sample`], or
    /// as the [`crate::sampler::SamplerConfig::filter`] of events that count every task);
    /// open as long as this lives.
    pub fn program_fd(&self) -> i32 {
        self.program
    }

    /// The goroutine stacks copied with thread `tid`'s sample at `time`: none unless it ran on
    /// its system stack or in a vdso call then.
    pub fn take(&mut self, tid: u32, time: u64) -> Vec<SwitchedStack> {
        if time.saturating_add(pairing::MAX_LAG_NS) > self.drained_at {
            // The copy is written before its sample is: reading the ring now finds it.
            self.drained_at = monotonic_ns();
            let pending = &mut self.pending;
            self.capture.drain(|captured| pending.insert(captured));
        }
        self.pending.take(tid, time)
    }

    /// The profile's comment: how many samples were followed back to their goroutine
    /// (`resumed`, as the unwinder counted them), and copies the program could not make.
    pub fn comment(&self, resumed: u64) -> String {
        let dropped = self.capture.dropped();
        format!(
            "goroutine stacks: {resumed} samples on Go's system stack, in a vdso call or in a \
             signal handler followed back to their goroutine (copied in the kernel with the \
             sample){}{}",
            if dropped > 0 {
                format!(", {dropped} copies could not be made (ring full or stack unreadable)")
            } else {
                String::new()
            },
            if self.capture.follows_signals() {
                ""
            } else {
                "; signal handlers not followed (no bpf_loop in this kernel, Linux < 5.17, or \
                 RPROF_GO_STACKS=nosignals): their samples end at the signal frame"
            }
        )
    }
}
