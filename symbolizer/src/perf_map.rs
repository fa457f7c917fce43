//! Names for JIT-compiled code: the `/tmp/perf-PID.map` files that JIT runtimes write for perf
//! (Node/V8 `--perf-basic-prof`, the JVM through perf-map-agent, .NET with
//! `DOTNET_PerfMapEnabled`, LuaJIT, Wasmtime...). Such code lives in anonymous memory, in no ELF
//! file, so this file is the only place its names are.
//!
//! The format is one function per line, `START SIZE NAME`: start and size in hex (with or
//! without `0x`), the name running to the end of the line. A runtime appends as it compiles and
//! may reuse the memory of collected code, so for one start address the last line wins.
//!
//! The file is the target's: it is read inside the target's root under the PID the target
//! knows itself by (its innermost PID namespace), only if it is a regular file owned by the
//! target's user (as perf insists: otherwise a process could make a privileged agent read
//! another user's file into a profile), and with its size and line lengths bounded.

use std::io::{self, BufRead, BufReader, Read};

use crate::target_fs::TargetRoot;

/// Larger maps than this are read up to this size (a long-lived Node process writes a few MB;
/// one that never stops compiling may write more, and its newest functions go unnamed).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Functions kept at most (a busy JIT writes tens of thousands). With the names in one buffer
/// (at most the file's size), a hostile file costs at most ~100 MiB, and only while the profile
/// is named.
const MAX_ENTRIES: usize = 1 << 20;

/// Names longer than this are cut: a JIT never writes them, a hostile file might.
const MAX_NAME_BYTES: usize = 1024;

/// How many earlier entries a lookup looks back through for overlapping code regions.
const MAX_OVERLAP_SCAN: usize = 16;

/// The functions of one perf map, sorted by start address.
#[derive(Debug, Default)]
pub struct PerfMap {
    entries: Vec<Entry>,
    /// Every name, one after the other: one allocation, not one per function.
    names: String,
}

#[derive(Debug)]
struct Entry {
    start: u64,
    end: u64,
    /// The name's bytes in `names`.
    name: std::ops::Range<usize>,
}

/// Where a process's perf map is: its root, the file name under its own PID, and the user
/// that must own it. Taken while the process runs, it still finds the map once the process
/// has exited (the root is held open), and never another process's under a reused PID.
#[derive(Debug)]
pub struct PerfMapSource {
    root: TargetRoot,
    path: String,
    uid: u32,
}

impl PerfMapSource {
    /// Process `pid`'s, as it is now.
    pub fn of_process(pid: u32) -> io::Result<PerfMapSource> {
        let status = read_status(pid)?;
        let (Some(ns_pid), Some(uid)) = (innermost_pid(&status), effective_uid(&status)) else {
            return Err(io::Error::other(format!(
                "/proc/{pid}/status has no NSpid or Uid line"
            )));
        };
        Ok(PerfMapSource {
            root: TargetRoot::of_process(pid),
            path: format!("/tmp/perf-{ns_pid}.map"),
            uid,
        })
    }

    /// Reads the map as it is now. `Ok(None)` when there is none (the common case: only JIT
    /// runtimes asked to write one do).
    pub fn read(&self) -> io::Result<Option<PerfMap>> {
        let file = match self.root.open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let owner = std::os::unix::fs::MetadataExt::uid(&file.metadata()?);
        if owner != self.uid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is owned by uid {owner}, not the target's {}",
                    self.path, self.uid
                ),
            ));
        }
        PerfMap::read_from(file).map(Some)
    }
}

impl PerfMap {
    /// Reads process `pid`'s perf map now (see [`PerfMapSource::read`]).
    pub fn for_process(pid: u32) -> io::Result<Option<PerfMap>> {
        PerfMapSource::of_process(pid)?.read()
    }

    /// Parses a perf map file, bounded in size and entries.
    fn read_from(file: std::fs::File) -> io::Result<PerfMap> {
        let mut map = PerfMap::default();
        let mut reader = BufReader::new(file.take(MAX_FILE_BYTES));
        let mut line = Vec::new();
        while map.entries.len() < MAX_ENTRIES {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            map.add_line(&String::from_utf8_lossy(&line));
        }
        map.index();
        Ok(map)
    }

    /// Parses a perf map, skipping lines that are not `START SIZE NAME`.
    pub fn parse(text: &str) -> PerfMap {
        let mut map = PerfMap::default();
        for line in text.lines().take(MAX_ENTRIES) {
            map.add_line(line);
        }
        map.index();
        map
    }

    fn add_line(&mut self, line: &str) {
        let Some((start, end, name)) = parse_line(line) else {
            return;
        };
        let at = self.names.len();
        self.names.push_str(name);
        self.entries.push(Entry {
            start,
            end,
            name: at..self.names.len(),
        });
    }

    /// Sorts the entries for lookup; for one start address the last line (the newest) wins.
    fn index(&mut self) {
        // Stable: for equal starts file order is kept, and dedup keeps the last one.
        self.entries.sort_by_key(|e| e.start);
        self.entries.reverse();
        self.entries.dedup_by_key(|e| e.start);
        self.entries.reverse();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name of the function whose code holds `address`.
    pub fn lookup(&self, address: u64) -> Option<&str> {
        let after = self.entries.partition_point(|e| e.start <= address);
        self.entries[..after]
            .iter()
            .rev()
            .take(MAX_OVERLAP_SCAN)
            .find(|e| address < e.end)
            .and_then(|e| self.names.get(e.name.clone()))
    }
}

/// `START SIZE NAME` as (start, end, name).
fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let mut fields = line.trim_start().splitn(3, [' ', '\t']);
    let start = hex(fields.next()?)?;
    let size = hex(fields.next()?)?;
    let name = fields.next()?.trim();
    if size == 0 || name.is_empty() {
        return None;
    }
    Some((
        start,
        start.checked_add(size)?,
        truncate(name, MAX_NAME_BYTES),
    ))
}

fn hex(field: &str) -> Option<u64> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .unwrap_or(field);
    u64::from_str_radix(digits, 16).ok()
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn read_status(pid: u32) -> io::Result<String> {
    crate::proc_dir::read_text_lossy(
        std::path::Path::new(&format!("/proc/{pid}/status")),
        64 << 10,
    )
}

/// The last NSpid field: the PID as the target's own PID namespace numbers it, which is the
/// number the runtime put in the file name.
fn innermost_pid(status: &str) -> Option<u32> {
    field(status, "NSpid:")?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The second Uid field.
fn effective_uid(status: &str) -> Option<u32> {
    field(status, "Uid:")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn field<'s>(status: &'s str, key: &str) -> Option<&'s str> {
    status.lines().find_map(|line| line.strip_prefix(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_inside_entries() {
        let map = PerfMap::parse(
            "7f0000001000 40 LazyCompile:*hot /app/x.js:1\n\
             0x7f0000002000 0x20 Builtin:ArgumentsAdaptorTrampoline\n",
        );
        assert_eq!(map.len(), 2);
        assert_eq!(
            map.lookup(0x7f00_0000_1000),
            Some("LazyCompile:*hot /app/x.js:1")
        );
        assert_eq!(
            map.lookup(0x7f00_0000_103f),
            Some("LazyCompile:*hot /app/x.js:1")
        );
        assert_eq!(map.lookup(0x7f00_0000_1040), None);
        assert_eq!(
            map.lookup(0x7f00_0000_2010),
            Some("Builtin:ArgumentsAdaptorTrampoline")
        );
        assert_eq!(map.lookup(0x10), None);
    }

    #[test]
    fn the_newest_entry_for_a_reused_address_wins() {
        let map = PerfMap::parse("1000 100 old\n1000 100 new\n");
        assert_eq!(map.lookup(0x1050), Some("new"));
    }

    #[test]
    fn code_inside_a_larger_earlier_region_is_found() {
        let map = PerfMap::parse("1000 1000 stub_region\n1800 10 inner\n");
        assert_eq!(map.lookup(0x1805), Some("inner"));
        assert_eq!(map.lookup(0x1900), Some("stub_region"));
    }

    #[test]
    fn garbage_lines_are_skipped_and_never_panic() {
        let long_name = "é".repeat(4000);
        let text = format!(
            "\n   \nzz 10 bad\n10 zz bad\n10\n10 10\n10 0 empty\nffffffffffffffff 10 overflow\n\
             2000 10 {long_name}\n3000\t10\ttabbed name\n"
        );
        let map = PerfMap::parse(&text);
        assert_eq!(map.len(), 2);
        assert!(map.lookup(0x2000).unwrap().len() <= MAX_NAME_BYTES);
        assert_eq!(map.lookup(0x3001), Some("tabbed name"));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tnode\nUid:\t1000\t1001\t1000\t1000\nNSpid:\t4242\t7\n";
        assert_eq!(innermost_pid(status), Some(7));
        assert_eq!(effective_uid(status), Some(1001));
    }

    #[test]
    fn a_process_without_a_map_has_none() {
        let map = PerfMap::for_process(std::process::id()).unwrap();
        assert!(map.is_none());
    }
}
