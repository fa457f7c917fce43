//! The target's readable mappings, from `/proc/PID/maps`: where a stack copy must end.
//!
//! Parsed by hand rather than with procfs: only two fields are needed, and procfs's maps
//! parser fails on the whole file when a mapped path (chosen by the target) is not UTF-8. Nor
//! with the symbolizer's (`rprof_symbolizer::maps`): this one may run while threads are
//! stopped, so it streams the file and allocates nothing per line, and it is fuzzed as is.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;

use crate::proc::task_file;

/// Ceiling for the maps file: `vm.max_map_count` defaults to 65530 mappings of ~100 bytes each,
/// so this leaves room for long paths without letting a huge file exhaust memory.
const MAPS_FILE_LIMIT: u64 = 64 * 1024 * 1024;

/// Address ranges of the readable mappings, sorted by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadableRanges {
    ranges: Vec<Range<u64>>,
}

impl ReadableRanges {
    /// The mappings of the first of `tids` that still has an address space. Threads share one,
    /// but the main thread can exit before the others, and a zombie's maps are empty.
    pub(crate) fn read_any(pid: u32, tids: &[u32]) -> ReadableRanges {
        let found = tids.iter().find_map(|&tid| {
            let ranges = Self::read(pid, tid).ok()?;
            (!ranges.ranges.is_empty()).then_some(ranges)
        });
        found.unwrap_or_default()
    }

    /// Reads `/proc/PID/task/TID/maps`.
    pub(crate) fn read(pid: u32, tid: u32) -> io::Result<ReadableRanges> {
        let file = File::open(task_file(pid, tid, "maps"))?;
        Self::parse(BufReader::new(file.take(MAPS_FILE_LIMIT)))
    }

    /// Keeps the `start-end` of every line whose permissions start with `r`; skips malformed lines.
    pub(crate) fn parse(mut input: impl BufRead) -> io::Result<ReadableRanges> {
        let mut ranges = Vec::new();
        let mut line = Vec::with_capacity(256);
        while input.read_until(b'\n', &mut line)? > 0 {
            ranges.extend(parse_readable_range(&line));
            line.clear();
        }
        // The kernel lists mappings in address order; sorting keeps the binary search correct
        // whatever the file says.
        ranges.sort_unstable_by_key(|r| r.start);
        Ok(ReadableRanges { ranges })
    }

    /// The mapping that contains `addr`.
    pub(crate) fn containing(&self, addr: u64) -> Option<Range<u64>> {
        let after = self.ranges.partition_point(|r| r.start <= addr);
        let candidate = self.ranges.get(after.checked_sub(1)?)?;
        candidate.contains(&addr).then(|| candidate.clone())
    }
}

/// `7f3b1e200000-7f3b1e228000 r-xp 00000000 fe:01 1234 /usr/lib/libc.so.6` → the range, if
/// readable. Works on bytes: only the first two fields matter, and a path need not be UTF-8.
fn parse_readable_range(line: &[u8]) -> Option<Range<u64>> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (range, perms) = (fields.next()?, fields.next()?);
    if perms.first() != Some(&b'r') {
        return None;
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = range.split_at(dash);
    let (start, end) = (parse_hex(start)?, parse_hex(&end[1..])?);
    (start < end).then_some(start..end)
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 131 /usr/bin/target
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 131 /usr/bin/target
7f3b1d7ff000-7f3b1d800000 ---p 00000000 00:00 0
7f3b1d800000-7f3b1e000000 rw-p 00000000 00:00 0
garbage line
7ffd2f1c9000-7ffd2f1ea000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn finds_the_mapping_of_an_address() {
        let maps = ReadableRanges::parse(MAPS.as_bytes()).unwrap();
        assert_eq!(maps.ranges.len(), 4);
        assert_eq!(
            maps.containing(0x7f3b1d900000),
            Some(0x7f3b1d800000..0x7f3b1e000000)
        );
        assert_eq!(
            maps.containing(0x7ffd2f1e8a70),
            Some(0x7ffd2f1c9000..0x7ffd2f1ea000)
        );
        assert_eq!(
            maps.containing(0x55d0c0a00000),
            Some(0x55d0c0a00000..0x55d0c0a01000)
        );
    }

    #[test]
    fn unreadable_and_unmapped_addresses_have_no_mapping() {
        let maps = ReadableRanges::parse(MAPS.as_bytes()).unwrap();
        assert_eq!(maps.containing(0x7f3b1d7ff800), None);
        assert_eq!(maps.containing(0x7f3b1e000000), None);
        assert_eq!(maps.containing(0), None);
        assert_eq!(maps.containing(u64::MAX), None);
        assert_eq!(ReadableRanges::default().containing(1), None);
    }

    #[test]
    fn reads_its_own_maps() {
        let pid = std::process::id();
        let maps = ReadableRanges::read_any(pid, &[u32::MAX, pid]);
        let local = 0u64;
        let addr = &local as *const u64 as u64;
        assert!(maps.containing(addr).is_some());
    }
}
