//! Reading the target's memory. Only reading: nothing here can write to the target.

use std::io::IoSliceMut;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

/// Copies up to `len` bytes of the memory of thread (or process) `tid` starting at `addr`, in one
/// system call.
///
/// `process_vm_readv` copies page by page and, when it faults part way, returns what it copied
/// before the fault: that prefix is kept. Nothing readable at `addr` gives an empty copy.
/// Works whether or not the thread is stopped; it needs the same permission as ptrace.
pub(crate) fn read_memory(tid: u32, addr: u64, len: usize) -> Vec<u8> {
    let (Ok(target), Ok(base)) = (i32::try_from(tid), usize::try_from(addr)) else {
        return Vec::new();
    };
    if len == 0 || base.checked_add(len).is_none() {
        return Vec::new();
    }
    let mut buf = vec![0u8; len];
    let remote = [RemoteIoVec { base, len }];
    let copied = process_vm_readv(
        Pid::from_raw(target),
        &mut [IoSliceMut::new(&mut buf)],
        &remote,
    )
    .unwrap_or(0);
    buf.truncate(copied);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_stops_at_unmapped_memory() {
        let data: Vec<u8> = (0..=255).collect();
        let copy = read_memory(std::process::id(), data.as_ptr() as u64, data.len());
        assert_eq!(copy, data);
        assert!(read_memory(std::process::id(), 0, 4096).is_empty());
        assert!(read_memory(std::process::id(), u64::MAX - 8, 4096).is_empty());
        assert!(read_memory(std::process::id(), data.as_ptr() as u64, 0).is_empty());
    }

    /// The end of a readable mapping of this process that is not followed by another mapping.
    fn end_of_mapping_before_a_gap() -> u64 {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let ranges: Vec<(u64, u64, bool)> = maps
            .lines()
            .map(|line| {
                let (range, rest) = line.split_once(' ').unwrap();
                let (start, end) = range.split_once('-').unwrap();
                let start = u64::from_str_radix(start, 16).unwrap();
                let end = u64::from_str_radix(end, 16).unwrap();
                (start, end, rest.starts_with('r'))
            })
            .collect();
        ranges
            .windows(2)
            .find(|pair| pair[0].2 && pair[0].1 < pair[1].0)
            .map(|pair| pair[0].1)
            .unwrap()
    }

    #[test]
    fn keeps_the_prefix_read_before_a_fault() {
        let end = end_of_mapping_before_a_gap();
        let copy = read_memory(std::process::id(), end - 100, 4096);
        assert_eq!(copy.len(), 100);
    }
}
