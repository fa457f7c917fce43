//! One perf event: a (thread, CPU) pair, or a whole CPU, counted and sampled by the kernel,
//! behind a file descriptor. Opening it and the ioctls the sampler uses.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use perf_event_open_sys::bindings::{self as sys, perf_event_attr};
use perf_event_open_sys::{ioctls, perf_event_open};

pub(crate) struct PerfEvent {
    fd: OwnedFd,
}

impl PerfEvent {
    /// Opens an event for thread `tid` on `cpu`, as `attr` describes it.
    pub(crate) fn open(attr: &perf_event_attr, tid: u32, cpu: u32) -> Result<PerfEvent, Errno> {
        let tid = i32::try_from(tid).map_err(|_| Errno::ESRCH)?;
        Self::open_raw(attr, tid, cpu)
    }

    /// Opens an event for thread `tid` on whichever CPU it runs.
    pub(crate) fn open_any_cpu(attr: &perf_event_attr, tid: u32) -> Result<PerfEvent, Errno> {
        let tid = i32::try_from(tid).map_err(|_| Errno::ESRCH)?;
        Self::open_raw_cpu(attr, tid, -1)
    }

    /// Opens an event for every task that runs on `cpu`.
    pub(crate) fn open_per_cpu(attr: &perf_event_attr, cpu: u32) -> Result<PerfEvent, Errno> {
        Self::open_raw(attr, -1, cpu)
    }

    /// Opens an event for the tasks of the cgroup whose directory is `cgroup`, on `cpu`.
    pub(crate) fn open_cgroup(
        attr: &perf_event_attr,
        cgroup: BorrowedFd<'_>,
        cpu: u32,
    ) -> Result<PerfEvent, Errno> {
        let cpu = i32::try_from(cpu).map_err(|_| Errno::EINVAL)?;
        Self::open_with(attr, cgroup.as_raw_fd(), cpu, sys::PERF_FLAG_PID_CGROUP)
    }

    fn open_raw(attr: &perf_event_attr, pid: i32, cpu: u32) -> Result<PerfEvent, Errno> {
        let cpu = i32::try_from(cpu).map_err(|_| Errno::EINVAL)?;
        Self::open_raw_cpu(attr, pid, cpu)
    }

    fn open_raw_cpu(attr: &perf_event_attr, pid: i32, cpu: i32) -> Result<PerfEvent, Errno> {
        Self::open_with(attr, pid, cpu, 0)
    }

    /// `pid` is a thread id, -1 (every task), or with `PERF_FLAG_PID_CGROUP` a cgroup
    /// directory's descriptor.
    fn open_with(
        attr: &perf_event_attr,
        pid: i32,
        cpu: i32,
        flags: u32,
    ) -> Result<PerfEvent, Errno> {
        // The kernel may write the size it supports back into the attr (E2BIG): give it a copy.
        let mut attr = *attr;
        // SAFETY: `attr` is a valid perf_event_attr whose `size` matches its type; the kernel
        // reads it and may write `size` back, nothing else. A uprobe attr also points at a
        // NUL-terminated path, which `attr::uprobe`'s callers keep alive across this call.
        let flags = sys::PERF_FLAG_FD_CLOEXEC | flags;
        let fd = unsafe { perf_event_open(&mut attr, pid, cpu, -1, flags.into()) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: perf_event_open returned a new descriptor that nothing else owns.
        Ok(PerfEvent {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn enable(&self) -> Result<(), Errno> {
        // SAFETY: ENABLE takes no pointer; the fd is a perf event we own.
        Errno::result(unsafe { ioctls::ENABLE(self.raw(), 0) }).map(drop)
    }

    pub(crate) fn disable(&self) -> Result<(), Errno> {
        // SAFETY: DISABLE takes no pointer; the fd is a perf event we own.
        Errno::result(unsafe { ioctls::DISABLE(self.raw(), 0) }).map(drop)
    }

    /// Enables the event for `overflows` more samples, after which the kernel disables it
    /// (not for inherited events).
    pub(crate) fn refresh(&self, overflows: i32) -> Result<(), Errno> {
        // SAFETY: REFRESH takes a count by value; the fd is a perf event we own.
        Errno::result(unsafe { ioctls::REFRESH(self.raw(), overflows) }).map(drop)
    }

    /// Samples every `period`-th event from the next one on (a fixed-period event).
    pub(crate) fn set_period(&self, period: u64) -> Result<(), Errno> {
        // SAFETY: PERIOD reads one u64 through the pointer passed as its argument, which
        // points at `period` for the duration of the call.
        Errno::result(unsafe { ioctls::PERIOD(self.raw(), std::ptr::from_ref(&period) as u64) })
            .map(drop)
    }

    /// Runs BPF program `program` (a `BPF_PROG_TYPE_PERF_EVENT` file descriptor) at each of
    /// this event's overflows: only those it returns non-zero for become samples. Inherited
    /// copies of the event run it too.
    pub(crate) fn set_bpf(&self, program: i32) -> Result<(), Errno> {
        // SAFETY: SET_BPF takes a BPF program fd by value, which the caller keeps open for
        // the call (the kernel then holds its own reference).
        Errno::result(unsafe { ioctls::SET_BPF(self.raw(), program as u32) }).map(drop)
    }

    /// Sends this event's records to `target`'s ring buffer (same CPU required).
    pub(crate) fn set_output(&self, target: &PerfEvent) -> Result<(), Errno> {
        // SAFETY: SET_OUTPUT takes another perf event fd, which `target` keeps open.
        Errno::result(unsafe { ioctls::SET_OUTPUT(self.raw(), target.raw()) }).map(drop)
    }

    /// The id the kernel stamps on this event's records (and on those of its inherited copies).
    pub(crate) fn id(&self) -> Result<u64, Errno> {
        let mut id = 0u64;
        // SAFETY: ID writes one u64 through the pointer, which points at `id`.
        Errno::result(unsafe { ioctls::ID(self.raw(), &mut id) })?;
        Ok(id)
    }

    fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PerfEvent {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
