//! The mmapped perf ring buffer of one CPU: every event on that CPU writes into it (the first
//! one owns the mapping, the others are redirected with PERF_EVENT_IOC_SET_OUTPUT).
//!
//! The kernel advances `data_head` after writing records; we read the records between our
//! `data_tail` and that head, then publish the new tail so the kernel may reuse the space. The
//! mapping is writable, which is what tells the kernel not to overwrite unread data (it counts
//! the records it drops instead, and reports them with PERF_RECORD_LOST).

use std::marker::PhantomData;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use nix::errno::Errno;
use perf_event_open_sys::bindings::perf_event_mmap_page;

use super::config::Trigger;
use super::error::SamplerError;
use super::event::PerfEvent;
use super::host;

/// How much ring buffer to map per CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingPlan {
    /// The size to try first: `wanted_bytes`, or less where the locked-memory budget cannot give
    /// every CPU that much.
    pub preferred_bytes: usize,
    /// The smallest size worth trying when the locked-memory limit refuses the preferred one.
    pub minimum_bytes: usize,
    /// What sampling wants per CPU without limits; rings smaller than this are reported.
    pub wanted_bytes: usize,
}

impl RingPlan {
    /// 2 MiB holds 32 samples with full-size stack copies, 320 ms of a busy CPU at 100 Hz;
    /// 512 KiB is what perf_event_mlock_kb lets an unprivileged user lock per CPU by default.
    pub(crate) const DEFAULT: RingPlan = RingPlan {
        preferred_bytes: 2 << 20,
        minimum_bytes: 512 << 10,
        wanted_bytes: 2 << 20,
    };

    /// For side-band records only (`Trigger::SideBand`): small, so that the locked memory goes
    /// to the samplers that copy stacks.
    pub(crate) const SIDE_BAND: RingPlan = RingPlan {
        preferred_bytes: 256 << 10,
        minimum_bytes: 64 << 10,
        wanted_bytes: 256 << 10,
    };

    /// For per-CPU uprobe events on `cpus` CPUs. Hits come in bursts (a pool starting its
    /// threads) and each wakeup of the agent costs the probed thread an interrupt, so the rings
    /// are larger and wake the agent less often: up to 8 MiB (128 samples with full-size stack
    /// copies) per CPU, within 32 MiB for all CPUs together.
    pub(crate) fn probes(cpus: usize) -> RingPlan {
        const TOTAL: usize = 32 << 20;
        let wanted = (TOTAL / cpus.max(1)).clamp(Self::DEFAULT.minimum_bytes, 8 << 20);
        RingPlan {
            preferred_bytes: wanted,
            minimum_bytes: Self::DEFAULT.minimum_bytes,
            wanted_bytes: wanted,
        }
    }

    /// For CPU-time (and page-fault) sampling on `cpus` CPUs. The agent is woken when a ring is
    /// half full, so the ring sets how many samples each wakeup reads: 8 MiB (64 samples with
    /// full-size stack copies at each wakeup, 64 ms of a busy CPU at 1000 Hz) per CPU within
    /// 32 MiB for all CPUs together, never less than [`RingPlan::DEFAULT`] per CPU. Rings
    /// the locked-memory limit keeps smaller are reported only below the default's 2 MiB: they
    /// wake the agent more often, but hold a busy CPU's samples as long as they did before.
    pub(crate) fn cpu_time(cpus: usize) -> RingPlan {
        const TOTAL: usize = 32 << 20;
        RingPlan {
            preferred_bytes: (TOTAL / cpus.max(1)).clamp(Self::DEFAULT.preferred_bytes, 8 << 20),
            ..Self::DEFAULT
        }
    }

    /// The plan for sampling with `trigger` on `cpus` CPUs (one ring each), sized to what the
    /// locked-memory limits let this process lock now, of which this sampler takes one
    /// `share`-th (the rest is for the samplers its recording opens next).
    pub(crate) fn for_trigger(trigger: &Trigger, cpus: usize, share: usize) -> RingPlan {
        let plan = match trigger {
            Trigger::CpuTime | Trigger::PageFaults { .. } => Self::cpu_time(cpus),
            // Switches come in bursts too, each sample with a stack copy.
            Trigger::Uprobes(_)
            | Trigger::ContextSwitches { .. }
            | Trigger::Tracepoint { .. }
            | Trigger::UserTime { .. } => Self::probes(cpus),
            // Mappings, names and exits only: a few records a second.
            Trigger::SideBand => Self::SIDE_BAND,
        };
        let page_size = usize::try_from(procfs::page_size()).unwrap_or(4096);
        let rings = cpus.saturating_mul(share.max(1));
        plan.within(LockBudget::now(cpus, page_size), rings, page_size)
    }

    /// The plan with every one of `rings` rings the same size, all of them within `budget`.
    ///
    /// Rings are mapped one after the other, and the kernel grants each from what the earlier
    /// ones left: mapping the first as large as the limit allows would leave the next ones
    /// less than the minimum (2 CPUs under `ulimit -l 0` have 2 × 516 KiB: a first ring of
    /// 1 MiB, then nothing), and sampling would fail where two 512 KiB rings fit.
    fn within(self, budget: LockBudget, rings: usize, page_size: usize) -> RingPlan {
        let LockBudget::Pages(pages) = budget else {
            return self;
        };
        // Each ring costs its data pages plus the metadata page.
        let per_ring = pages / rings.max(1);
        let fits = per_ring
            .checked_sub(1)
            .filter(|&data| data > 0)
            .map_or(0, |data| {
                whole_pages(data.saturating_mul(page_size), page_size)
            });
        RingPlan {
            preferred_bytes: fits.clamp(
                self.minimum_bytes,
                self.preferred_bytes.max(self.minimum_bytes),
            ),
            ..self
        }
    }
}

/// What the kernel still lets this process lock for perf ring buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockBudget {
    /// CAP_IPC_LOCK, perf_event_paranoid -1 or an unlimited RLIMIT_MEMLOCK.
    Unlimited,
    Pages(usize),
}

impl LockBudget {
    /// The kernel's rule (kernel/events/core.c, perf_mmap): a ring costs its pages plus one;
    /// each user may lock perf_event_mlock_kb per online CPU for all their perf rings together,
    /// and a process may lock RLIMIT_MEMLOCK beyond that (counted in its pinned memory, VmPin).
    /// Unless the process has CAP_IPC_LOCK or perf_event_paranoid is -1.
    ///
    /// Other processes of the same user holding perf rings are not visible here: the mapping
    /// then fails and [`Ring::map_within`] halves the ring.
    fn now(cpus: usize, page_size: usize) -> LockBudget {
        if host::has_ipc_lock() || host::kernel_sysctl("perf_event_paranoid") == Some(-1) {
            return LockBudget::Unlimited;
        }
        let Some(rlimit) = host::memlock_limit() else {
            return LockBudget::Unlimited;
        };
        let mlock_kb = host::kernel_sysctl("perf_event_mlock_kb")
            .and_then(|kb| usize::try_from(kb).ok())
            .unwrap_or(516);
        let pinned = crate::proc::pinned_bytes().unwrap_or(0);
        LockBudget::from_limits(
            mlock_kb.saturating_mul(1024).saturating_mul(cpus),
            usize::try_from(rlimit).unwrap_or(usize::MAX),
            pinned,
            HELD_BYTES.load(Ordering::Relaxed),
            page_size,
        )
    }

    /// The budget from the limits, in bytes: the user's perf allowance, RLIMIT_MEMLOCK, this
    /// process's pinned memory (VmPin) and what its own rings already hold.
    fn from_limits(
        user_allowance: usize,
        rlimit: usize,
        pinned: usize,
        held: usize,
        page_size: usize,
    ) -> LockBudget {
        let page = page_size.max(1);
        let (user, rlimit, pinned, held) = (
            user_allowance / page,
            rlimit / page,
            pinned / page,
            held / page,
        );
        // Our rings took the user allowance first and pinned the rest; what else is pinned
        // (io_uring, RDMA...) counts against RLIMIT_MEMLOCK too.
        let other_pinned = pinned.saturating_sub(held.saturating_sub(user));
        LockBudget::Pages(
            user.saturating_add(rlimit)
                .saturating_sub(held.saturating_add(other_pinned)),
        )
    }
}

/// Bytes of ring buffer (data and metadata pages) this process has mapped and not unmapped.
static HELD_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A ring buffer and the event that owns its mapping.
pub(crate) struct Ring {
    mapping: Mapping,
    data_offset: usize,
    data_size: usize,
    /// Records that wrap around the end of the data area are copied here to be contiguous.
    scratch: Vec<u8>,
    /// Other events on this CPU redirect their output to this one, so it stays open as long as
    /// the ring exists, even after its thread exits.
    owner: PerfEvent,
}

impl Ring {
    /// Maps the largest ring of `plan` the locked-memory limit allows for `owner`, halving the
    /// size after EPERM (over the limit) or ENOMEM.
    pub(crate) fn map_within(
        owner: PerfEvent,
        plan: RingPlan,
        page_size: usize,
    ) -> Result<Ring, SamplerError> {
        let minimum = whole_pages(plan.minimum_bytes, page_size);
        let mut bytes = whole_pages(plan.preferred_bytes, page_size).max(minimum);
        let mut owner = owner;
        loop {
            match Ring::map(owner, bytes, page_size) {
                Ok(ring) => return Ok(ring),
                Err((event, Errno::EPERM | Errno::ENOMEM)) if bytes > minimum => {
                    owner = event;
                    bytes /= 2;
                }
                Err((_, Errno::EPERM)) => return Err(SamplerError::mlock_limit(bytes)),
                Err((_, errno)) => {
                    return Err(SamplerError::io("mmap of the perf ring buffer", errno))
                }
            }
        }
    }

    /// Maps `data_bytes` (a power-of-two number of pages) of ring buffer for `owner`.
    fn map(
        owner: PerfEvent,
        data_bytes: usize,
        page_size: usize,
    ) -> Result<Ring, (PerfEvent, Errno)> {
        let mapping = match Mapping::new(&owner, page_size + data_bytes) {
            Ok(mapping) => mapping,
            Err(errno) => return Err((owner, errno)),
        };
        let mut ring = Ring {
            mapping,
            data_offset: page_size,
            data_size: data_bytes,
            scratch: Vec::new(),
            owner,
        };
        // Since Linux 4.1 the kernel says where the data area is; older kernels leave zeros
        // and use the layout assumed above.
        let offset = ring
            .mapping
            .meta(offset_of!(perf_event_mmap_page, data_offset))
            .load(Ordering::Relaxed);
        let size = ring
            .mapping
            .meta(offset_of!(perf_event_mmap_page, data_size))
            .load(Ordering::Relaxed);
        if let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) {
            if size != 0 && offset.checked_add(size) == Some(ring.mapping.len) {
                ring.data_offset = offset;
                ring.data_size = size;
            }
        }
        Ok(ring)
    }

    pub(crate) fn owner(&self) -> &PerfEvent {
        &self.owner
    }

    pub(crate) fn data_size(&self) -> usize {
        self.data_size
    }

    /// Reads the records published so far; the space is handed back to the kernel when the
    /// cursor is dropped.
    pub(crate) fn cursor(&mut self) -> RingCursor<'_> {
        // Acquire pairs with the kernel's release of data_head: records before it are complete.
        let head = self
            .mapping
            .meta(offset_of!(perf_event_mmap_page, data_head))
            .load(Ordering::Acquire);
        // Only we write data_tail.
        let tail = self
            .mapping
            .meta(offset_of!(perf_event_mmap_page, data_tail))
            .load(Ordering::Relaxed);
        let data = self.mapping.ptr.as_ptr().wrapping_add(self.data_offset);
        // SAFETY: the data area lies inside the mapping, which lives as long as the `&mut self`
        // borrow held by the cursor. The kernel only writes past `head` until we move data_tail,
        // which the cursor does on drop, after the last record borrowed from it is gone.
        let area = unsafe { DataArea::from_raw(data, self.data_size) };
        let tail_field = self
            .mapping
            .meta(offset_of!(perf_event_mmap_page, data_tail));
        RingCursor {
            records: RecordCursor::new(area, tail, head, &mut self.scratch),
            tail: tail_field,
        }
    }
}

/// `bytes` rounded down to a power-of-two number of pages (the kernel requires it), at least one.
fn whole_pages(bytes: usize, page_size: usize) -> usize {
    let pages = (bytes / page_size.max(1)).max(1);
    let pages = 1usize << (usize::BITS - 1 - pages.leading_zeros());
    pages * page_size
}

/// Iterates the published records of one ring; publishes the new tail when dropped.
pub(crate) struct RingCursor<'r> {
    records: RecordCursor<'r>,
    tail: &'r AtomicU64,
}

impl<'r> RingCursor<'r> {
    pub(crate) fn records(&mut self) -> &mut RecordCursor<'r> {
        &mut self.records
    }
}

impl Drop for RingCursor<'_> {
    fn drop(&mut self) {
        // Release: our reads of the records happen before the kernel may overwrite them.
        self.tail.store(self.records.position(), Ordering::Release);
    }
}

/// Walks whole records between two positions of a ring's data area.
pub(crate) struct RecordCursor<'a> {
    area: DataArea<'a>,
    position: u64,
    head: u64,
    scratch: &'a mut Vec<u8>,
    /// Size of the record at `position`, once `peek` has checked it.
    current: Option<u64>,
    /// The position whose record `scratch` holds.
    scratch_holds: Option<u64>,
    /// Bytes skipped because they did not form a valid record.
    skipped: u64,
}

impl<'a> RecordCursor<'a> {
    pub(crate) fn new(area: DataArea<'a>, tail: u64, head: u64, scratch: &'a mut Vec<u8>) -> Self {
        let mut cursor = RecordCursor {
            area,
            position: tail,
            head,
            scratch,
            current: None,
            scratch_holds: None,
            skipped: 0,
        };
        // The kernel never publishes more than the area holds; if it seems to, resynchronise.
        if head.wrapping_sub(tail) > area.len as u64 {
            cursor.skip_to_head();
        }
        cursor
    }

    /// The record at the cursor, contiguous even if it wraps around the end of the area.
    pub(crate) fn peek(&mut self) -> Option<&[u8]> {
        let size = match self.current {
            Some(size) => size,
            None => self.check_record()?,
        };
        let len = usize::try_from(size).ok()?;
        let offset = self.offset();
        if let Some(bytes) = self.area.slice(offset, len) {
            return Some(bytes);
        }
        if self.scratch_holds != Some(self.position) {
            if !self.area.copy_wrapped(offset, len, self.scratch) {
                self.skip_to_head();
                return None;
            }
            self.scratch_holds = Some(self.position);
        }
        Some(self.scratch.as_slice())
    }

    /// Moves past the record at the cursor.
    pub(crate) fn advance(&mut self) {
        if let Some(size) = self.current.take().or_else(|| self.check_record()) {
            self.position = self.position.wrapping_add(size);
            self.current = None;
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Reads and checks the header at the cursor; returns the record size.
    fn check_record(&mut self) -> Option<u64> {
        let available = self.head.wrapping_sub(self.position);
        if available == 0 {
            return None;
        }
        let mut header = [0u8; 8];
        if !self.area.read_wrapped(self.offset(), &mut header) {
            self.skip_to_head();
            return None;
        }
        let size = u64::from(u16::from_ne_bytes([header[6], header[7]]));
        // A record holds at least its header and cannot extend past what was published; after
        // a bad size nothing further can be trusted to start on a record boundary.
        if size < 8 || size > available {
            self.skip_to_head();
            return None;
        }
        self.current = Some(size);
        Some(size)
    }

    fn skip_to_head(&mut self) {
        self.skipped += self.head.wrapping_sub(self.position);
        self.position = self.head;
        self.current = None;
    }

    fn offset(&self) -> usize {
        // `len` fits in usize, so the remainder does too.
        (self.position % self.area.len.max(1) as u64) as usize
    }
}

/// A ring buffer's data area: read through raw pointers because the kernel writes to the parts
/// we are not reading.
#[derive(Clone, Copy)]
pub(crate) struct DataArea<'a> {
    start: NonNull<u8>,
    len: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> DataArea<'a> {
    /// # Safety
    /// `start` must be valid for reads of `len` bytes during `'a`, and no byte range handed out
    /// by `slice` or copied by `copy_wrapped`/`read_wrapped` may be written while `'a` lasts.
    pub(crate) unsafe fn from_raw(start: *mut u8, len: usize) -> Self {
        DataArea {
            start: NonNull::new(start).unwrap_or(NonNull::dangling()),
            len: if start.is_null() { 0 } else { len },
            _borrow: PhantomData,
        }
    }

    #[cfg(test)]
    pub(crate) fn from_slice(bytes: &'a [u8]) -> Self {
        // SAFETY: a shared slice is readable and immutable for 'a.
        unsafe { Self::from_raw(bytes.as_ptr().cast_mut(), bytes.len()) }
    }

    /// `len` bytes at `offset` if they do not wrap around the end.
    fn slice(&self, offset: usize, len: usize) -> Option<&'a [u8]> {
        if offset.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above); stability of these bytes is the caller's promise
        // in `from_raw`.
        Some(unsafe { std::slice::from_raw_parts(self.start.as_ptr().add(offset), len) })
    }

    /// Copies `len` bytes starting at `offset`, continuing at the start of the area.
    fn copy_wrapped(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if len > self.len || offset >= self.len {
            return false;
        }
        let first = len.min(self.len - offset);
        let (Some(end), Some(start)) = (self.slice(offset, first), self.slice(0, len - first))
        else {
            return false;
        };
        out.clear();
        out.extend_from_slice(end);
        out.extend_from_slice(start);
        true
    }

    fn read_wrapped(&self, offset: usize, out: &mut [u8]) -> bool {
        if out.len() > self.len || offset >= self.len {
            return false;
        }
        let first = out.len().min(self.len - offset);
        let (Some(end), Some(start)) =
            (self.slice(offset, first), self.slice(0, out.len() - first))
        else {
            return false;
        };
        out[..first].copy_from_slice(end);
        out[first..].copy_from_slice(start);
        true
    }
}

/// A shared, writable mapping of a perf event fd.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(event: &PerfEvent, len: usize) -> Result<Mapping, Errno> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else refers to that range.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                event.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::EINVAL)?;
        HELD_BYTES.fetch_add(len, Ordering::Relaxed);
        Ok(Mapping { ptr, len })
    }
}

impl Mapping {
    /// A u64 field of the metadata page at the start of the mapping, which the kernel reads and
    /// writes concurrently. `offset` is a field offset of perf_event_mmap_page.
    fn meta(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset & 7 == 0 && offset + 8 <= size_of::<perf_event_mmap_page>());
        // SAFETY: perf_event_mmap_page fills the start of the (page-aligned, longer than a page)
        // mapping and its u64 fields are 8-byte aligned; the reference borrows `self`, so it
        // cannot outlive the mapping.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; every borrow of it ended with the `Ring`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        HELD_BYTES.fetch_sub(self.len, Ordering::Relaxed);
    }
}

// SAFETY: the mapping is owned by one `Ring` and only read or written through it; the kernel
// side does not care which thread reads.
unsafe impl Send for Mapping {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::record::tests::{sample_record, RecordBuilder};
    use perf_event_open_sys::bindings as sys;

    fn lost_record(count: u64) -> Vec<u8> {
        RecordBuilder::new(sys::PERF_RECORD_LOST, 0)
            .u64(1)
            .u64(count)
            .trailer(1, 1, 1, 1)
            .build()
    }

    /// Writes `records` into an area of `size` bytes starting at `tail`, as the kernel would.
    fn ring_with(size: usize, tail: u64, records: &[Vec<u8>]) -> (Vec<u8>, u64) {
        let mut area = vec![0xAAu8; size];
        let mut head = tail;
        for record in records {
            for &byte in record {
                area[(head % size as u64) as usize] = byte;
                head += 1;
            }
        }
        (area, head)
    }

    fn collect(area: &[u8], tail: u64, head: u64) -> (Vec<Vec<u8>>, u64, u64) {
        let mut scratch = Vec::new();
        let mut cursor = RecordCursor::new(DataArea::from_slice(area), tail, head, &mut scratch);
        let mut out = Vec::new();
        while let Some(bytes) = cursor.peek() {
            out.push(bytes.to_vec());
            cursor.advance();
        }
        (out, cursor.position(), cursor.skipped_bytes())
    }

    #[test]
    fn ring_sizes_are_power_of_two_pages() {
        assert_eq!(whole_pages(2 << 20, 4096), 2 << 20);
        assert_eq!(whole_pages(3 << 20, 4096), 2 << 20);
        assert_eq!(whole_pages(100, 4096), 4096);
        assert_eq!(whole_pages(512 << 10, 65536), 512 << 10);
    }

    #[test]
    fn probe_rings_are_large_within_a_total() {
        assert_eq!(RingPlan::probes(2).preferred_bytes, 8 << 20);
        assert_eq!(RingPlan::probes(8).preferred_bytes, 4 << 20);
        assert_eq!(RingPlan::probes(256).preferred_bytes, 512 << 10);
        assert_eq!(RingPlan::cpu_time(2).preferred_bytes, 8 << 20);
        assert_eq!(RingPlan::cpu_time(8).preferred_bytes, 4 << 20);
        assert_eq!(RingPlan::cpu_time(256).preferred_bytes, 2 << 20);
        assert_eq!(
            RingPlan::DEFAULT.within(LockBudget::Unlimited, 64, 4096),
            RingPlan::DEFAULT
        );
    }

    #[test]
    fn rings_share_the_budget_equally() {
        const KIB: usize = 1024;
        // 2 CPUs, `ulimit -l 0`, nothing held: the user's 2 × 516 KiB give two 512 KiB rings
        // (a 1 MiB first ring would leave the second nothing).
        let budget = LockBudget::from_limits(2 * 516 * KIB, 0, 0, 0, 4096);
        assert_eq!(budget, LockBudget::Pages(258));
        let plan = RingPlan::DEFAULT.within(budget, 2, 4096);
        assert_eq!(plan.preferred_bytes, 512 * KIB);
        assert_eq!(plan.wanted_bytes, 2 << 20);
        // `ulimit -l 2048`: 258 + 512 pages, 385 per ring: 1 MiB each.
        let budget = LockBudget::from_limits(2 * 516 * KIB, 2048 * KIB, 0, 0, 4096);
        assert_eq!(
            RingPlan::DEFAULT.within(budget, 2, 4096).preferred_bytes,
            1 << 20
        );
        // Plenty: the wanted size, never more.
        let budget = LockBudget::from_limits(2 * 516 * KIB, 64 << 20, 0, 0, 4096);
        assert_eq!(RingPlan::DEFAULT.within(budget, 2, 4096), RingPlan::DEFAULT);
        // 64 CPUs under the default 8 MiB: 64 × 516 KiB + 8 MiB = 656 KiB each, so 512 KiB
        // rings for all (mapping 2 MiB ones first ran out after a third of the CPUs).
        let budget = LockBudget::from_limits(64 * 516 * KIB, 8 << 20, 0, 0, 4096);
        assert_eq!(
            RingPlan::DEFAULT.within(budget, 64, 4096).preferred_bytes,
            512 * KIB
        );
        // Nothing left: the minimum is tried, and the kernel says no.
        let held = 2 * (513 * 4096);
        let budget = LockBudget::from_limits(2 * 516 * KIB, 0, 0, held, 4096);
        assert_eq!(budget, LockBudget::Pages(0));
        assert_eq!(
            RingPlan::DEFAULT.within(budget, 2, 4096).preferred_bytes,
            512 * KIB
        );
    }

    #[test]
    fn two_samplers_of_one_recording_both_fit_under_a_memlock_limit() {
        const KIB: usize = 1024;
        // 2 CPUs, `ulimit -l 8192` (Docker's default here), no CAP_IPC_LOCK: the first of two
        // samplers takes half (1 MiB rings, not 4 MiB ones)...
        let budget = LockBudget::from_limits(2 * 516 * KIB, 8 << 20, 0, 0, 4096);
        let first = RingPlan::cpu_time(2).within(budget, 2 * 2, 4096);
        assert_eq!(first.preferred_bytes, 2 << 20);
        // ...and the second still gets at least the minimum from what is left.
        let held = 2 * (first.preferred_bytes + 4096);
        let budget = LockBudget::from_limits(2 * 516 * KIB, 8 << 20, held - 258 * 4096, held, 4096);
        let second = RingPlan::probes(2).within(budget, 2, 4096);
        assert!(second.preferred_bytes >= RingPlan::DEFAULT.minimum_bytes);
        let LockBudget::Pages(left) = budget else {
            panic!("a limited budget")
        };
        assert!(
            2 * (second.preferred_bytes / 4096 + 1) <= left,
            "{second:?} in {left} pages"
        );
    }

    #[test]
    fn rings_held_by_this_process_and_other_pins_count() {
        // Two 2 MiB rings held (1026 pages): 258 in the user allowance, 768 pinned.
        let held = 2 * 513 * 4096;
        let pinned = 768 * 4096;
        let budget = LockBudget::from_limits(258 * 4096, 1024 * 4096, pinned, held, 4096);
        assert_eq!(budget, LockBudget::Pages(258 + 1024 - 1026));
        // 10 pages pinned by something else on top.
        let budget =
            LockBudget::from_limits(258 * 4096, 1024 * 4096, pinned + 10 * 4096, held, 4096);
        assert_eq!(budget, LockBudget::Pages(258 + 1024 - 1026 - 10));
    }

    #[test]
    fn records_are_read_in_order() {
        let records = vec![
            lost_record(1),
            sample_record(5, 2, &[1; 16], 8),
            lost_record(3),
        ];
        let (area, head) = ring_with(512, 0, &records);
        let (read, position, skipped) = collect(&area, 0, head);
        assert_eq!(read, records);
        assert_eq!((position, skipped), (head, 0));
    }

    #[test]
    fn a_record_wrapping_the_end_comes_out_contiguous() {
        let sample = sample_record(5, 2, &[9; 40], 40);
        // Start 24 bytes before the end: the header and ids are at the end, the rest at the start.
        let size = 256;
        let tail = 3 * size as u64 - 24;
        let records = vec![sample.clone(), lost_record(4)];
        let (area, head) = ring_with(size, tail, &records);
        let (read, position, skipped) = collect(&area, tail, head);
        assert_eq!(read, records);
        assert_eq!((position, skipped), (head, 0));
    }

    #[test]
    fn peeking_twice_gives_the_same_record() {
        let records = vec![sample_record(5, 2, &[9; 40], 40)];
        let (area, head) = ring_with(128, 100, &records);
        let mut scratch = Vec::new();
        let mut cursor = RecordCursor::new(DataArea::from_slice(&area), 100, head, &mut scratch);
        let first = cursor.peek().unwrap().to_vec();
        assert_eq!(cursor.peek().unwrap(), first.as_slice());
        cursor.advance();
        assert!(cursor.peek().is_none());
    }

    #[test]
    fn a_bad_size_skips_to_the_head_without_panicking() {
        let mut zero = lost_record(1);
        zero[6..8].copy_from_slice(&0u16.to_ne_bytes());
        let (area, head) = ring_with(256, 0, &[lost_record(7), zero, lost_record(2)]);
        let (read, position, skipped) = collect(&area, 0, head);
        assert_eq!(read, vec![lost_record(7)]);
        assert_eq!(position, head);
        assert_eq!(skipped, head - lost_record(7).len() as u64);
    }

    #[test]
    fn a_record_longer_than_what_was_published_is_skipped() {
        let record = sample_record(5, 2, &[9; 40], 40);
        let (area, head) = ring_with(256, 0, std::slice::from_ref(&record));
        let (read, position, skipped) = collect(&area, 0, head - 8);
        assert!(read.is_empty());
        assert_eq!((position, skipped), (head - 8, head - 8));
    }

    #[test]
    fn a_head_beyond_the_area_resynchronises() {
        let (area, _) = ring_with(64, 0, &[]);
        let (read, position, skipped) = collect(&area, 0, 1000);
        assert!(read.is_empty());
        assert_eq!((position, skipped), (1000, 1000));
    }

    #[test]
    fn garbage_areas_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let size = 8 * (1 + (next() % 32) as usize);
            let area: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            let tail = next() % 10_000;
            let head = tail + next() % (size as u64 + 16);
            let _ = collect(&area, tail, head);
        }
    }
}
