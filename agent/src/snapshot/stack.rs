//! A thread's registers and the copy of its stack that an unwinder walks.

use super::maps::ReadableRanges;
use super::memory::read_memory;

/// The registers an unwinder starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    /// Instruction pointer.
    pub ip: u64,
    /// Stack pointer.
    pub sp: u64,
    /// Frame pointer (`rbp` on x86-64, `x29` on aarch64); 0 when unknown.
    pub bp: u64,
}

/// How a thread's stack was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureSource {
    /// Read while the thread was blocked in the kernel, which it did not leave meanwhile.
    Blocked,
    /// A perf sample taken while it ran.
    Sampled,
    /// Stopped with ptrace for the copy.
    Stopped,
}

/// One thread's registers and raw stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCapture {
    pub tid: u32,
    pub regs: Registers,
    pub source: CaptureSource,
    /// Copy of target memory starting at `regs.sp`, up to the end of its mapping or the size
    /// limit, whichever comes first. Empty when nothing was readable there.
    pub stack: Vec<u8>,
}

/// Copies stacks, each bounded by the size limit and by the end of the mapping it lives in.
pub(crate) struct StackReader {
    pid: u32,
    max_bytes: usize,
    ranges: ReadableRanges,
    refreshed: bool,
}

impl StackReader {
    /// Reads the mappings of `pid` (through the first of its threads `tids` that has them) now,
    /// so that copying a stack later costs one system call.
    pub(crate) fn new(pid: u32, tids: &[u32], max_bytes: usize) -> StackReader {
        StackReader {
            pid,
            max_bytes,
            ranges: ReadableRanges::read_any(pid, tids),
            refreshed: false,
        }
    }

    /// A capture of thread `tid`'s stack at `regs.sp`.
    pub(crate) fn capture(
        &mut self,
        tid: u32,
        regs: Registers,
        source: CaptureSource,
    ) -> StackCapture {
        StackCapture {
            tid,
            regs,
            source,
            stack: self.copy(tid, regs.sp),
        }
    }

    /// Copies from `sp` up to the end of its mapping, at most `max_bytes`. Reads through `tid`
    /// itself, which has the address space even when the main thread has exited.
    fn copy(&mut self, tid: u32, sp: u64) -> Vec<u8> {
        let Some(end) = self.mapping_end(tid, sp) else {
            return Vec::new();
        };
        let available = usize::try_from(end - sp).unwrap_or(usize::MAX);
        read_memory(tid, sp, available.min(self.max_bytes))
    }

    /// The end of the mapping holding `sp`. A stack created after the maps were read (a new
    /// thread, or the main stack grown down) is not in them: read them once more, but only once
    /// per snapshot, since this may run while the target is stopped.
    fn mapping_end(&mut self, tid: u32, sp: u64) -> Option<u64> {
        if let Some(range) = self.ranges.containing(sp) {
            return Some(range.end);
        }
        if self.refreshed {
            return None;
        }
        self.refreshed = true;
        self.ranges = ReadableRanges::read(self.pid, tid).unwrap_or_default();
        self.ranges.containing(sp).map(|range| range.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_sp() -> u64 {
        let local = 0u8;
        std::hint::black_box(&local) as *const u8 as u64
    }

    #[test]
    fn copies_up_to_the_end_of_the_stack_mapping() {
        let pid = std::process::id();
        let sp = own_sp();
        let end = ReadableRanges::read(pid, pid)
            .unwrap()
            .containing(sp)
            .unwrap()
            .end;
        let mut reader = StackReader::new(pid, &[pid], usize::MAX);
        let capture = reader.capture(pid, Registers { ip: 1, sp, bp: 0 }, CaptureSource::Blocked);
        assert_eq!(capture.stack.len() as u64, end - sp);
        assert_eq!((capture.tid, capture.regs.sp), (pid, sp));
    }

    #[test]
    fn honours_the_size_limit_and_unmapped_stack_pointers() {
        let pid = std::process::id();
        let mut reader = StackReader::new(pid, &[pid], 100);
        assert_eq!(reader.copy(pid, own_sp()).len(), 100);
        assert!(reader.copy(pid, 0).is_empty());
        assert!(reader.copy(pid, u64::MAX).is_empty());
    }
}
