//! Stacks deeper than the sampled copy, completed from the thread's live stack memory where the
//! copy proves it right.
//!
//! A sample carries at most ~64 KiB of stack (the kernel's record size limit): a compiler, a
//! recursive parser or an interpreter is deeper than that, and its unwind stops at the end of
//! the copy. The frames beyond it are the oldest ones, and they are usually still there when
//! the sample is unwound (a few milliseconds later): the thread is still below them. That is
//! checked, not assumed: the last [`BOUNDARY_BYTES`] of the copy — the frames nearest to the
//! missing ones, return addresses included — must read the same from the live memory now. If
//! the thread has returned past them (or they changed), the unwind stays truncated. The
//! remaining risk, that the thread returned and came back down through the very same frames
//! with the very same contents, gives the same stack anyway.
//!
//! Memory is read with `pread` on `/proc/PID/mem` (the target is never written, never stopped),
//! a page at a time, at most [`MAX_BEYOND_BYTES`] past the copy per unwind.

use std::cell::Cell;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The tail of the copy that must match the live memory: a few frames' worth.
const BOUNDARY_BYTES: usize = 512;
/// How far past the copy an unwind may read: the unwinder's frame limit bounds it too.
const MAX_BEYOND_BYTES: u64 = 8 << 20;
const PAGE: u64 = 4096;

/// The target's memory, readable (`/proc/PID/mem`), or not (no permission, gone).
#[derive(Debug)]
pub struct LiveMemory {
    mem: Option<File>,
}

impl LiveMemory {
    /// Opens `pid`'s memory for reading. Without ptrace rights over it (or once it is gone)
    /// stacks are simply not completed.
    pub fn open(pid: u32) -> Self {
        let mem = File::open(format!("/proc/{pid}/mem"))
            .map_err(|err| tracing::debug!(pid, %err, "live stacks unreadable"))
            .ok();
        LiveMemory { mem }
    }

    /// No live memory: stacks end where their copy does.
    #[cfg(test)]
    pub fn none() -> Self {
        LiveMemory { mem: None }
    }

    /// Fills `buf` from target address `addr`; false unless all of it was read.
    pub(super) fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(mem) = &self.mem else {
            return false;
        };
        matches!(mem.read_at(buf, addr), Ok(n) if n == buf.len())
    }
}

/// What one unwind reads past its copy: the boundary check's result and the page last read.
pub struct Beyond<'a> {
    live: &'a LiveMemory,
    /// The first address past the copy.
    copy_end: u64,
    /// The copy's last bytes, checked against the live memory on the first read past it.
    tail: &'a [u8],
    checked: Option<bool>,
    page: Option<(u64, Box<[u8; PAGE as usize]>)>,
    /// Set once a word is read from the live memory: the frames unwound from then on rest on
    /// it (see `call_site`).
    used: &'a Cell<bool>,
}

impl<'a> Beyond<'a> {
    /// For a copy of `copy` bytes at `sp`; `used` is set when the live memory is read.
    pub fn new(live: &'a LiveMemory, sp: u64, copy: &'a [u8], used: &'a Cell<bool>) -> Self {
        let tail = &copy[copy.len().saturating_sub(BOUNDARY_BYTES)..];
        Beyond {
            live,
            copy_end: sp.saturating_add(copy.len() as u64),
            tail,
            checked: None,
            page: None,
            used,
        }
    }

    /// The word at `addr`, past the copy, from the live memory if the boundary matches.
    pub fn read_u64(&mut self, addr: u64) -> Option<u64> {
        if addr < self.copy_end || addr - self.copy_end >= MAX_BEYOND_BYTES {
            return None;
        }
        let holds = match self.checked {
            Some(holds) => holds,
            None => *self.checked.insert(self.boundary_holds()),
        };
        if !holds {
            return None;
        }
        let mut word = [0u8; 8];
        for (i, byte) in word.iter_mut().enumerate() {
            *byte = self.byte(addr.checked_add(i as u64)?)?;
        }
        self.used.set(true);
        Some(u64::from_le_bytes(word))
    }

    /// Whether the copy's tail is what the live memory holds now (a full copy only: a copy
    /// shorter than the boundary has nothing to prove it with).
    fn boundary_holds(&self) -> bool {
        if self.tail.len() < BOUNDARY_BYTES {
            return false;
        }
        let mut now = vec![0u8; self.tail.len()];
        let start = self.copy_end - self.tail.len() as u64;
        self.live.read(start, &mut now) && now == self.tail
    }

    fn byte(&mut self, addr: u64) -> Option<u8> {
        let base = addr & !(PAGE - 1);
        if self.page.as_ref().is_none_or(|(at, _)| *at != base) {
            let mut page = Box::new([0u8; PAGE as usize]);
            if !self.live.read(base, &mut page[..]) {
                return None;
            }
            self.page = Some((base, page));
        }
        let (_, page) = self.page.as_ref()?;
        page.get(usize::try_from(addr - base).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack-like buffer of this process: the "target" is the test itself.
    fn own_memory() -> LiveMemory {
        LiveMemory::open(std::process::id())
    }

    #[test]
    fn past_a_matching_copy_the_live_words_are_read() {
        let memory: Vec<u64> = (0..4096u64).map(|i| i * 3 + 1).collect();
        let bytes = &as_bytes(&memory)[..];
        let base = bytes.as_ptr() as u64;
        let live = own_memory();
        // The copy: the first 8 KiB; the rest is "beyond".
        let copy = &bytes[..8192];
        let used = Cell::new(false);
        let mut beyond = Beyond::new(&live, base, copy, &used);
        assert_eq!(beyond.read_u64(base + 8), None, "inside the copy: not ours");
        assert_eq!(beyond.read_u64(base + 8192), Some(memory[1024]));
        assert_eq!(beyond.read_u64(base + 20_000), Some(memory[2500]));
        assert!(used.get());
    }

    #[test]
    fn a_boundary_that_changed_since_the_copy_reads_nothing() {
        let memory: Vec<u64> = (0..2048u64).collect();
        let bytes = &as_bytes(&memory)[..];
        let base = bytes.as_ptr() as u64;
        let live = own_memory();
        let mut stale = bytes[..8192].to_vec();
        stale[8000] ^= 0xff; // A return address near the boundary is not what it was.
        let used = Cell::new(false);
        let mut beyond = Beyond::new(&live, base, &stale, &used);
        assert_eq!(beyond.read_u64(base + 8192), None);
        assert!(!used.get());
    }

    #[test]
    fn a_short_copy_or_unreadable_memory_reads_nothing() {
        let memory: Vec<u64> = (0..1024u64).collect();
        let bytes = &as_bytes(&memory)[..];
        let base = bytes.as_ptr() as u64;
        let live = own_memory();
        let used = Cell::new(false);
        let mut short = Beyond::new(&live, base, &bytes[..256], &used);
        assert_eq!(short.read_u64(base + 256), None);
        let none = LiveMemory::none();
        let mut unreadable = Beyond::new(&none, base, &bytes[..4096], &used);
        assert_eq!(unreadable.read_u64(base + 4096), None);
        let mut far = Beyond::new(&live, base, &bytes[..4096], &used);
        assert_eq!(far.read_u64(base + 4096 + MAX_BEYOND_BYTES), None);
        assert!(!used.get());
    }

    /// The words' bytes, in a buffer of their own: the memory the tests read back.
    fn as_bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }
}
