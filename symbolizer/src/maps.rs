//! `/proc/PID/maps`: which files a process has mapped, and where.
//!
//! Parsed here rather than with procfs: its maps parser reads UTF-8 lines and fails on the
//! whole file when one mapped path is not UTF-8 (a name the target chooses); this one reads
//! lossily, with a size bound, and skips a malformed line instead.

use std::io;

/// `/proc/PID/maps` of a huge process (JVMs, browsers) is a few MiB; anything beyond this is
/// not a maps file we want to hold in memory.
const MAX_MAPS_BYTES: u64 = 64 << 20;
/// The kernel caps the number of mappings at `vm.max_map_count` (65530 by default); leave
/// generous room for raised limits.
const MAX_MAPS_LINES: usize = 1 << 20;
/// PATH_MAX plus the fixed fields.
const MAX_LINE_LEN: usize = 4096 + 128;
const DELETED_SUFFIX: &str = " (deleted)";

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// As printed in maps (`/usr/lib/libc.so.6`, `[vdso]`, `[heap]`, empty for anonymous
    /// memory), with the ` (deleted)` suffix stripped.
    pub path: String,
    /// The mapped file was deleted (or replaced) after it was mapped.
    pub deleted: bool,
}

impl MapEntry {
    /// Backed by a file (rather than anonymous memory or a kernel pseudo-mapping).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// The name of this mapping under `/proc/PID/map_files/`.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

/// Reads and parses `/proc/<pid>/maps` (a live thread's, when the main thread has exited).
pub fn read_maps(pid: u32) -> io::Result<Vec<MapEntry>> {
    // Paths are raw bytes: one that is not UTF-8 must not hide every other mapping.
    let text = crate::proc_dir::read_text_lossy(
        &crate::proc_dir::process_dir(pid).join("maps"),
        MAX_MAPS_BYTES,
    )?;
    Ok(parse_maps(&text))
}

/// Parses the text of a maps file, skipping malformed lines.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines()
        .take(MAX_MAPS_LINES)
        .filter(|line| line.len() <= MAX_LINE_LEN)
        .filter_map(parse_line)
        .collect()
}

/// `start-end perms offset major:minor inode [path]`
fn parse_line(line: &str) -> Option<MapEntry> {
    let mut rest = line;
    let range = next_field(&mut rest)?;
    let perms = next_field(&mut rest)?.as_bytes();
    let offset = next_field(&mut rest)?;
    let dev = next_field(&mut rest)?;
    let inode = next_field(&mut rest)?;
    // The path is everything after the inode's padding; it may itself contain spaces.
    let path = rest.trim_start_matches(' ');

    let (start, end) = range.split_once('-')?;
    let (start, end) = (hex(start)?, hex(end)?);
    if start > end || perms.len() < 4 {
        return None;
    }
    let (major, minor) = dev.split_once(':')?;
    let (path, deleted) = match path.strip_suffix(DELETED_SUFFIX) {
        Some(stripped) => (stripped, true),
        None => (path, false),
    };
    Some(MapEntry {
        start,
        end,
        read: perms.first() == Some(&b'r'),
        write: perms.get(1) == Some(&b'w'),
        exec: perms.get(2) == Some(&b'x'),
        offset: hex(offset)?,
        dev_major: u32::from_str_radix(major, 16).ok()?,
        dev_minor: u32::from_str_radix(minor, 16).ok()?,
        inode: inode.parse().ok()?,
        path: path.to_owned(),
        deleted,
    })
}

/// Splits off the next space-separated field.
fn next_field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let trimmed = rest.trim_start_matches(' ');
    let end = trimmed.find(' ').unwrap_or(trimmed.len());
    let (field, tail) = trimmed.split_at(end);
    *rest = tail;
    (!field.is_empty()).then_some(field)
}

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
5639251f1000-5639251f3000 r--p 00000000 fe:00 247030                     /usr/bin/cat
5639251f3000-5639251f8000 r-xp 00002000 fe:00 247030                     /usr/bin/cat
563950c13000-563950c34000 rw-p 00000000 00:00 0                          [heap]
7f725ad8b000-7f725adad000 rw-p 00000000 00:00 0 
garbage line
7f725b003000-7f725b005000 r-xp 00000000 00:00 0                          [vdso]
7f725b006000-7f725b02c000 r-xp 00001000 103:0a 325843                    /tmp/my lib.so (deleted)
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_real_layout() {
        let maps = parse_maps(SAMPLE);
        assert_eq!(maps.len(), 7);
        let text = &maps[1];
        assert_eq!(
            (text.start, text.end, text.offset),
            (0x5639251f3000, 0x5639251f8000, 0x2000)
        );
        assert!(text.read && !text.write && text.exec);
        assert_eq!(
            (text.dev_major, text.dev_minor, text.inode),
            (0xfe, 0, 247030)
        );
        assert_eq!(text.path, "/usr/bin/cat");
        assert!(text.is_file());
        assert_eq!(text.map_files_name(), "5639251f3000-5639251f8000");
        assert_eq!(maps[3].path, "");
        assert!(!maps[3].is_file());
        assert_eq!(maps[4].path, "[vdso]");
        let deleted = &maps[5];
        assert_eq!(deleted.path, "/tmp/my lib.so");
        assert!(deleted.deleted);
        assert_eq!((deleted.dev_major, deleted.dev_minor), (0x103, 0xa));
        assert_eq!(maps[6].start, 0xffffffffff600000);
    }

    #[test]
    fn skips_malformed_lines() {
        for line in [
            "",
            "1000-0 r-xp 0 00:00 0",
            "zz-1000 r-xp 0 00:00 0 /x",
            "1000-2000 r-xp 0 0000 0 /x",
            "1000-2000 r 0 00:00 0 /x",
            "1000-2000 r-xp 0 00:00 -1 /x",
            "1000-2000 r-xp 0 00:00",
        ] {
            assert!(parse_maps(line).is_empty(), "{line:?}");
        }
    }
}
