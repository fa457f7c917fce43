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

use crate::sampler::monotonic_ns;
use crate::unwind::{ModuleSet, SwitchedStack};

/// Goroutine stacks of one Go process, copied with its samples and waiting for them.
pub struct GoStacks {
    capture: GoStackCapture,
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

impl GoStacks {
    /// For the target whose modules are `modules`, if its main executable is a Go program
    /// whose DWARF describes the runtime's structs. Why not otherwise.
    pub fn for_target(modules: &ModuleSet) -> Result<GoStacks, NotFollowed> {
        let go = modules
            .all()
            .iter()
            .find(|module| module.is_main && module.object.is_go())
            .ok_or(NotFollowed::NotGo)?;
        let layout = go.object.go_runtime_layout().ok_or_else(|| {
            NotFollowed::Unable(
                "the Go binary has no DWARF describing its runtime: built with -ldflags=-w, or \
                 stripped"
                    .to_owned(),
            )
        })?;
        let capture = GoStackCapture::load(modules.pid(), &layout)
            .map_err(|err| NotFollowed::Unable(format!("{err:#}")))?;
        Ok(GoStacks {
            capture,
            pending: Pending::default(),
            drained_at: 0,
        })
    }

    /// The program, to run with each sample ([`crate::sampler::SamplerConfig::on_sample`]).
    pub fn program_fd(&self) -> Option<i32> {
        self.capture
            .program_fd()
            .map_err(|err| tracing::debug!("no goroutine stack program: {err:#}"))
            .ok()
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

    /// The profile's comment: how many samples ran on a switched stack, and were followed.
    pub fn comment(&self) -> String {
        let (sent, dropped) = self.capture.counts();
        format!(
            "goroutine stacks: {sent} samples on Go's system stack or in a vdso call followed \
             back to their goroutine (copied in the kernel with the sample){}",
            if dropped > 0 {
                format!(", {dropped} could not be copied")
            } else {
                String::new()
            }
        )
    }
}
