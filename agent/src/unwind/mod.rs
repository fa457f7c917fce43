//! User-space stack unwinding of sampled or captured stacks, with framehop over the target's own
//! unwind information (.eh_frame, .eh_frame_hdr, .debug_frame; frame pointers as fallback).

mod call_site;
mod live;
mod modules;
mod stack;

use std::cell::Cell;

use live::{Beyond, LiveMemory};
use modules::ModuleChange;
pub use modules::ModuleSet;
pub use stack::StackMemory;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder};
use rprof_symbolizer::maps::MapEntry;
use rprof_symbolizer::Bytes;

/// A stack deeper than this many frames is cut (and counted as truncated): it bounds the work a
/// corrupt stack can cause, far above what real programs reach within a 64 KiB stack copy.
pub const MAX_FRAMES: usize = 4096;

/// Registers the unwinder starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registers {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
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
        }
    }

    /// Stacks deeper than their copy that were completed from the live memory.
    pub fn completed(&self) -> u64 {
        self.completed
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
    /// code had been).
    pub fn unwind(
        &mut self,
        regs: Registers,
        stack: &StackMemory<'_>,
        out: &mut Vec<u64>,
    ) -> UnwindEnd {
        out.clear();
        if !self.modules.contains(regs.ip) && self.modules.may_refresh() {
            self.refresh_modules();
        }
        let used_live = Cell::new(false);
        let mut beyond = Beyond::new(&self.live, stack.sp(), stack.bytes(), &used_live);
        let mut read = |addr: u64| {
            stack
                .read_u64(addr)
                .or_else(|| beyond.read_u64(addr))
                .ok_or(())
        };
        let unwind_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut frames =
            self.unwinder
                .iter_frames(regs.ip, unwind_regs, &mut self.cache, &mut read);
        let end = loop {
            if out.len() >= MAX_FRAMES {
                break UnwindEnd::Truncated;
            }
            match frames.next() {
                Ok(Some(frame)) => {
                    let address = frame.address_for_lookup();
                    // Frames resting on live memory must call one into the other.
                    if let (FrameAddress::ReturnAddress(ret), Some(&callee)) = (frame, out.last()) {
                        if used_live.get()
                            && !call_site::calls_into(&self.live, &self.modules, ret.get(), callee)
                        {
                            break UnwindEnd::Truncated;
                        }
                    }
                    out.push(address);
                    if self.modules.is_thread_root(address) {
                        break UnwindEnd::Complete;
                    }
                }
                Ok(None) => break UnwindEnd::Complete,
                Err(_) => break UnwindEnd::Truncated,
            }
        };
        if used_live.get() && end == UnwindEnd::Complete {
            self.completed += 1;
        }
        // Named where the modules they are in are named: see ModuleSet.
        self.modules.translate(out);
        end
    }
}
