//! [`Bytes`]: cheaply clonable, immutable byte buffers shared between the parser, gimli and
//! framehop.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::truncation_guard::{self, Guard};

/// Where the bytes of a [`Bytes`] live.
enum Storage {
    /// A read-only mapping of a file: large binaries are paged in on demand, never copied.
    Mmap(GuardedMap),
    /// Owned memory: decompressed sections, the vdso image read from the target, test data.
    Vec(Vec<u8>),
}

impl Storage {
    fn as_slice(&self) -> &[u8] {
        match self {
            Storage::Mmap(guarded) => &guarded.map,
            Storage::Vec(vec) => vec,
        }
    }
}

/// A file mapping guarded against truncation (see [`crate::truncation_guard`]). Fields drop in
/// order: the guard goes before the mapping is unmapped.
struct GuardedMap {
    _guard: Guard,
    map: memmap2::Mmap,
}

/// Cheaply clonable, immutable bytes: an `Arc`'d file mapping or vector plus a sub-range.
///
/// Cloning and slicing never copy the data, so section data handed to framehop or gimli keeps
/// the underlying file mapping alive for exactly as long as anyone uses it.
#[derive(Clone)]
pub struct Bytes {
    storage: Arc<Storage>,
    // Invariant: start <= end <= storage.as_slice().len().
    start: usize,
    end: usize,
}

impl Bytes {
    /// An empty buffer.
    pub fn empty() -> Bytes {
        Bytes::from_vec(Vec::new())
    }

    /// Takes ownership of `vec`.
    pub fn from_vec(vec: Vec<u8>) -> Bytes {
        let end = vec.len();
        Bytes {
            storage: Arc::new(Storage::Vec(vec)),
            start: 0,
            end,
        }
    }

    /// Maps `file` read-only (private mapping).
    ///
    /// The file may be the target's, and cut short while mapped: pages past its new end then
    /// read as zeros ([`crate::truncation_guard`]) instead of killing us with SIGBUS. Where
    /// that guard is not available, the file is read into memory instead.
    pub fn map_file(file: &File) -> io::Result<Bytes> {
        let len = file.metadata()?.len();
        if len == 0 {
            // mmap(2) rejects zero-length mappings.
            return Ok(Bytes::empty());
        }
        // SAFETY: the mapping is read-only and private. Its contents can change under us only
        // if the file is truncated or written to: truncation is handled by the guard below,
        // and a rewrite changes bytes that every parser already treats as untrusted.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        let Some(guard) = truncation_guard::guard(map.as_ptr(), map.len()) else {
            drop(map);
            return Bytes::read_file(file);
        };
        let end = map.len();
        Ok(Bytes {
            storage: Arc::new(Storage::Mmap(GuardedMap { _guard: guard, map })),
            start: 0,
            end,
        })
    }

    /// Reads the whole of `file` into memory (no larger than its size said at the start).
    fn read_file(file: &File) -> io::Result<Bytes> {
        let len = file.metadata()?.len();
        let mut data = Vec::new();
        file.take(len).read_to_end(&mut data)?;
        Ok(Bytes::from_vec(data))
    }

    /// The sub-range `range` of this buffer (relative to its start), or `None` when it is out
    /// of bounds. Shares the storage.
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        Some(Bytes {
            storage: Arc::clone(&self.storage),
            start: self.start + range.start,
            end: self.start + range.end,
        })
    }

    /// Lets the kernel drop this range's file pages from our resident memory (`MADV_DONTNEED`
    /// over the pages it spans): they are read back from the file, or the page cache, when next
    /// touched. For a file parsed once (a symbol table) or read at scattered places (names,
    /// unwind tables), what stays resident is what was touched last, not all ever touched. No
    /// effect on owned memory.
    ///
    /// The range is widened to the 64 KiB blocks around it: a fault on a file mapping maps the
    /// cached pages of its whole block ("fault-around", `fault_around_bytes`), so reading one
    /// name makes sixteen pages resident.
    pub fn release_pages(&self) {
        const FAULT_AROUND: usize = 64 * 1024;
        let Storage::Mmap(guarded) = &*self.storage else {
            return;
        };
        // Block boundaries are virtual addresses; offsets here are from the mapping's start.
        let base = guarded.map.as_ptr() as usize;
        let start = (base + self.start) / FAULT_AROUND * FAULT_AROUND;
        let end = (base + self.end).div_ceil(FAULT_AROUND) * FAULT_AROUND;
        let start = start.saturating_sub(base);
        let end = end.saturating_sub(base).min(guarded.map.len());
        if start >= end {
            return;
        }
        // SAFETY: the mapping is a read-only (shared) file mapping we never write: dropping its
        // pages only unmaps them, and the next read maps them again from the page cache, with
        // the same contents (or, if the file changed, contents every parser treats as untrusted
        // anyway; pages past a truncation read as zeros, as the guard makes them). Slices
        // borrowed from the mapping, by this thread or others, stay valid: the range stays
        // mapped.
        let result = unsafe {
            guarded.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start,
                end - start,
            )
        };
        if let Err(err) = result {
            tracing::debug!(%err, "madvise(MADV_DONTNEED) failed");
        }
    }

    /// Like [`Bytes::slice`] with a 64-bit file offset and size, as found in ELF headers.
    pub fn slice_at(&self, offset: u64, size: u64) -> Option<Bytes> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        self.slice(start..end)
    }
}

impl Deref for Bytes {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // In bounds by the struct invariant; `get` keeps this panic-free regardless.
        self.storage
            .as_slice()
            .get(self.start..self.end)
            .unwrap_or_default()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(vec: Vec<u8>) -> Bytes {
        Bytes::from_vec(vec)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match *self.storage {
            Storage::Mmap(_) => "mmap",
            Storage::Vec(_) => "vec",
        };
        f.debug_struct("Bytes")
            .field("storage", &kind)
            .field("range", &(self.start..self.end))
            .finish()
    }
}

// SAFETY: the bytes live in an `Arc` whose contents are never mutated or moved (a `Vec` that is
// never touched again or a mapping), so the slice returned by `deref` has the same address for
// every clone of a `Bytes`, as long as any clone lives.
unsafe impl gimli::StableDeref for Bytes {}
// SAFETY: see above; clones share the `Arc`.
unsafe impl gimli::CloneStableDeref for Bytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_storage_and_check_bounds() {
        let bytes = Bytes::from_vec((0u8..10).collect());
        let mid = bytes.slice(2..6).unwrap();
        assert_eq!(&*mid, &[2, 3, 4, 5]);
        assert_eq!(&*mid.slice(1..3).unwrap(), &[3, 4]);
        assert!(mid.slice(3..5).is_none());
        assert!(bytes.slice_at(8, 3).is_none());
        assert!(bytes.slice_at(u64::MAX, 1).is_none());
        assert_eq!(bytes.slice_at(9, 1).unwrap().len(), 1);
    }

    #[test]
    fn released_pages_read_back_the_same() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..5 * 4096u32).map(|i| (i % 251) as u8).collect();
        std::io::Write::write_all(&mut file, &data).unwrap();
        let bytes = Bytes::map_file(&file).unwrap();
        let middle = bytes.slice(5000..9000).unwrap();
        assert_eq!(&*middle, &data[5000..9000]);
        middle.release_pages();
        bytes.release_pages();
        assert_eq!(&*bytes, &data[..]);
        Bytes::from_vec(vec![1, 2, 3]).release_pages();
    }
}
