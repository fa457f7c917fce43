//! User-space stack unwinding of sampled or captured stacks, with framehop over the target's own
//! unwind information (.eh_frame, .eh_frame_hdr, .debug_frame; frame pointers as fallback).

mod call_site;
mod live;
mod modules;
mod signal;
mod stack;
mod switched;

use std::cell::Cell;

use live::{Beyond, LiveMemory};
use modules::ModuleChange;
pub use modules::{ModuleSet, StackSwitch};
pub use stack::StackMemory;
pub use switched::{SwitchKind, SwitchedStack};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder};
use rprof_symbolizer::maps::MapEntry;
use rprof_symbolizer::Bytes;

/// A stack deeper than this many frames is cut (and counted as truncated): it bounds the work a
/// corrupt stack can cause, far above what real programs reach within a 64 KiB stack copy.
pub const MAX_FRAMES: usize = 4096;

/// Signal frames followed in one unwind at most (a handler interrupted by another signal...):
/// bounds what a crafted stack of signal contexts pointing at each other can cost.
const MAX_SIGNAL_FRAMES: usize = 8;

/// Registers the unwinder starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registers {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Where one walk over one stack stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walked {
    /// At the thread's (or goroutine's) root frame.
    Root,
    /// At a function that switches stacks: what called it is on another stack.
    Switch(StackSwitch),
    /// At a signal frame: the handler interrupted code with these registers.
    Signal(Registers),
    /// Short of a root (stack copy too short, no unwind info, corrupt stack).
    Truncated,
}

/// How an unwind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwindEnd {
    /// The unwinder reached the thread's root frame.
    Complete,
    /// Unwinding stopped early (stack copy too short, no unwind info, corrupt stack).
    Truncated,
}

/// Unwinds stacks of one target process. Holds framehop's unwinder and cache; the module list is
/// refreshed when the process maps new code.
pub struct StackUnwinder {
    unwinder: UnwinderX86_64<Bytes>,
    cache: CacheX86_64,
    modules: ModuleSet,
    /// The target's stack memory now, for stacks deeper than their copy (see [`live`]).
    live: LiveMemory,
    /// Unwinds that reached the thread's root through live memory past their copy.
    completed: u64,
    /// Unwinds that went on from a stack the thread had switched away from.
    resumed: u64,
}

impl StackUnwinder {
    pub fn new(modules: ModuleSet) -> Self {
        let mut unwinder = UnwinderX86_64::new();
        for module in modules.framehop_modules() {
            unwinder.add_module(module);
        }
        let live = LiveMemory::open(modules.pid());
        StackUnwinder {
            unwinder,
            cache: CacheX86_64::new(),
            modules,
            live,
            completed: 0,
            resumed: 0,
        }
    }

    /// Stacks deeper than their copy that were completed from the live memory.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Unwinds that went on from a stack the thread had switched away from (Go's goroutine
    /// under its system stack).
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    pub fn modules(&self) -> &ModuleSet {
        &self.modules
    }

    /// Gives the module set back (to symbolize what was unwound).
    pub fn into_modules(self) -> ModuleSet {
        self.modules
    }

    /// Re-reads the target's mappings and tells framehop about added and removed modules.
    /// Returns false when nothing could be read (the target is gone).
    pub fn refresh_modules(&mut self) -> bool {
        let Some(change) = self.modules.refresh() else {
            return false;
        };
        self.apply(change);
        true
    }

    /// The target mapped executable code (a perf `MMAP2` record): known from now on, in
    /// place of whatever was mapped there before. False when the file could not be loaded.
    pub fn code_mapped(&mut self, mapping: &MapEntry) -> bool {
        let Some(change) = self.modules.mapped(mapping) else {
            return false;
        };
        self.apply(change);
        true
    }

    /// The target exec()ed: none of its modules is mapped any more.
    pub fn exec(&mut self) {
        let change = self.modules.exec();
        self.apply(change);
        // /proc/PID/mem reads the address space it was opened on: the new program's is another.
        self.live = LiveMemory::open(self.modules.pid());
    }

    fn apply(&mut self, change: ModuleChange) {
        for start in change.removed {
            self.unwinder.remove_module(start);
        }
        for module in change.added {
            self.unwinder.add_module(module);
        }
    }

    /// Unwinds one stack into `out` as lookup addresses: the instruction pointer first, then each
    /// caller's return address minus one (so it falls inside the call instruction, which is what
    /// symbolization and pprof locations want), translated for naming (see
    /// [`ModuleSet::translate`]: the same as the real ones unless code was mapped where other
    /// code had been). The stacks the thread had switched away from (`switched`, Go's
    /// goroutine under its system stack) continue the unwind at each switch.
    pub fn unwind(
        &mut self,
        regs: Registers,
        stack: &StackMemory<'_>,
        switched: &[SwitchedStack],
        out: &mut Vec<u64>,
    ) -> UnwindEnd {
        out.clear();
        if !self.modules.contains(regs.ip) && self.modules.may_refresh() {
            self.refresh_modules();
        }
        let followed = !switched.is_empty();
        let mut walked = self.walk(regs, stack, followed, out);
        let mut resumed = false;
        // Where the frames of the stack walked last begin in `out`.
        let mut segment = 0;
        for (i, goroutine) in switched.iter().enumerate() {
            // Code a signal interrupted was on g0 if what follows is about g0.
            let on_g0 = switched[i + 1..]
                .iter()
                .any(|next| matches!(next.kind, SwitchKind::Scheduled | SwitchKind::Parked));
            let (after, went_on) = self.switch_over(walked, goroutine, segment, on_g0, out);
            if let Some(start) = went_on {
                segment = start;
                resumed = true;
            }
            walked = after;
        }
        self.resumed += u64::from(resumed);
        // A signal handler that ran on the stack it interrupted (no alternate signal stack,
        // as in most programs): the interrupted frames are in the same copy.
        for _ in 0..MAX_SIGNAL_FRAMES {
            let Walked::Signal(interrupted) = walked else {
                break;
            };
            walked = if stack.holds(interrupted.sp) {
                self.walk(interrupted, stack, followed, out)
            } else {
                Walked::Truncated
            };
        }
        let end = match walked {
            // The goroutine that called mcall gave the thread up, and the thread's current
            // goroutine may already be the next one: Go's own traceback ends at mcall too.
            Walked::Root | Walked::Switch(StackSwitch::Mcall) => UnwindEnd::Complete,
            Walked::Switch(_) | Walked::Signal(_) | Walked::Truncated => UnwindEnd::Truncated,
        };
        // Named where the modules they are in are named: see ModuleSet.
        self.modules.translate(out);
        end
    }

    /// Unwinds from `regs` over `stack`, appending to `out`, until a root, a stack switch, a
    /// signal frame or the end of what can be read. `regs.ip` is the first frame, as is (an
    /// interrupted instruction, or a resume point). A switching function as the first frame
    /// is a switch only if `switched` (a copy says the thread ran on the other stack): before
    /// its switch it unwinds as any function.
    fn walk(
        &mut self,
        regs: Registers,
        stack: &StackMemory<'_>,
        switched: bool,
        out: &mut Vec<u64>,
    ) -> Walked {
        let used_live = Cell::new(false);
        let mut beyond = Beyond::new(&self.live, stack.sp(), stack.bytes(), &used_live);
        let mut read = |addr: u64| {
            stack
                .read_u64(addr)
                .or_else(|| beyond.read_u64(addr))
                .ok_or(())
        };
        // framehop's unwinder stepped by hand (rather than its iterator) for the registers at
        // each frame: a signal frame's context lies at its stack pointer.
        let mut unwind_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut frame = FrameAddress::InstructionPointer(regs.ip);
        let first = out.len();
        let mut steps = 0;
        let walked = loop {
            // Frames skipped (placeholders) count too: a corrupt stack cannot loop for ever.
            steps += 1;
            if out.len() >= MAX_FRAMES || steps > 2 * MAX_FRAMES {
                break Walked::Truncated;
            }
            // A restorer's "return address" is where the kernel sent the handler back to, not
            // after a call: it is named as is.
            let restorer = signal::is_restorer(&self.modules, frame);
            let address = if restorer {
                frame.address()
            } else {
                frame.address_for_lookup()
            };
            // Frames resting on live memory must call one into the other.
            if let (FrameAddress::ReturnAddress(ret), Some(&callee)) =
                (frame, out.get(first..).and_then(<[u64]>::last))
            {
                if used_live.get()
                    && !call_site::calls_into(&self.live, &self.modules, ret.get(), callee)
                {
                    break Walked::Truncated;
                }
            }
            let is_call = matches!(frame, FrameAddress::ReturnAddress(_));
            let switch = self
                .modules
                .stack_switch(address)
                .filter(|_| is_call || switched);
            if switch != Some(StackSwitch::Placeholder) {
                out.push(address);
                if self.modules.is_thread_root(address) {
                    break Walked::Root;
                }
                if let Some(switch) = switch {
                    break Walked::Switch(switch);
                }
                if restorer {
                    break signal::interrupted(unwind_regs.sp(), &mut read)
                        .map_or(Walked::Truncated, Walked::Signal);
                }
            }
            match self
                .unwinder
                .unwind_frame(frame, &mut unwind_regs, &mut self.cache, &mut read)
            {
                Ok(Some(ret)) => match FrameAddress::from_return_address(ret) {
                    Some(caller) => frame = caller,
                    None => break Walked::Truncated,
                },
                Ok(None) => break Walked::Root,
                Err(_) => break Walked::Truncated,
            }
        };
        if used_live.get() && walked == Walked::Root {
            self.completed += 1;
        }
        walked
    }

    /// Where the unwind goes after `walked`, given a stack the thread had switched away from,
    /// and, if it went on on that stack, where in `out` the frames walked there begin.
    /// `segment` is where the frames of the stack walked last begin in `out`; `on_g0`, for a
    /// signal's interrupted code, whether it ran on g0 (a switching function there has
    /// switched).
    fn switch_over(
        &mut self,
        walked: Walked,
        goroutine: &SwitchedStack,
        segment: usize,
        on_g0: bool,
        out: &mut Vec<u64>,
    ) -> (Walked, Option<usize>) {
        match (goroutine.kind, walked) {
            // A signal frame not followed: the vdso call was the interrupted code's.
            (SwitchKind::Vdso, Walked::Signal(_)) => (walked, None),
            (SwitchKind::Vdso, _) => {
                // The Go function that made the vdso call moved SP: whatever the walk read
                // past it is not its caller's frame.
                self.cut_after_vdso_caller(segment, out);
                let start = out.len();
                (self.resume(goroutine, out), Some(start))
            }
            (SwitchKind::Scheduled, Walked::Switch(StackSwitch::System)) => {
                let start = out.len();
                (self.resume(goroutine, out), Some(start))
            }
            (SwitchKind::Parked, Walked::Switch(StackSwitch::System)) => (Walked::Root, None),
            // The code the signal interrupted, copied at the sample: the same registers as the
            // signal frame holds, or not the same signal.
            (SwitchKind::Signal, Walked::Signal(interrupted))
                if interrupted.sp == goroutine.regs.sp && interrupted.ip == goroutine.regs.ip =>
            {
                let start = out.len();
                let memory = goroutine.memory();
                (self.walk(goroutine.regs, &memory, on_g0, out), Some(start))
            }
            // Nothing to follow there (the walk ended before the switch, or at mcall).
            (_, walked) => (walked, None),
        }
    }

    /// Goes on unwinding on the stack the thread switched away from. Its pc is a return
    /// address or a resume point just after one (Go's saved `g.sched`), named as a call site.
    fn resume(&mut self, goroutine: &SwitchedStack, out: &mut Vec<u64>) -> Walked {
        let first = out.len();
        let walked = self.walk(goroutine.regs, &goroutine.memory(), true, out);
        // The resume point itself, unless skipped (a placeholder): named as a call site, as
        // the frames above it are.
        if let Some(resumed) = out.get_mut(first).filter(|at| **at == goroutine.regs.ip) {
            *resumed = resumed.saturating_sub(1);
        }
        walked
    }

    /// Keeps, of the frames walked last (from `segment` on), the vdso's frames and the first
    /// frame past them (the Go function that called it).
    fn cut_after_vdso_caller(&self, segment: usize, out: &mut Vec<u64>) {
        let in_vdso = |address: u64| {
            self.modules
                .mapped_at(address)
                .is_some_and(|module| module.is_vdso)
        };
        let walked = out.get(segment..).unwrap_or_default();
        if let Some(caller) = walked.iter().position(|&address| !in_vdso(address)) {
            out.truncate(segment + caller + 1);
        }
    }
}
