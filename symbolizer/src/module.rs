//! [`MappedModule`]: one ELF object as mapped in a process, and how maps lines group into
//! modules.

use std::ops::Range;
use std::sync::Arc;

use crate::maps::MapEntry;
use crate::object_info::ObjectInfo;

pub(crate) const VDSO_PATH: &str = "[vdso]";

/// One mapped ELF object in a process (all its mappings grouped).
#[derive(Debug, Clone)]
pub struct MappedModule {
    /// As in maps (`" (deleted)"` stripped).
    pub path: String,
    /// Union of its mappings.
    pub avma: Range<u64>,
    /// Its executable mappings.
    pub exec_avma: Vec<Range<u64>>,
    /// File offset of its first mapping.
    pub file_offset: u64,
    /// `avma = svma + bias` (wrapping).
    pub bias: u64,
    pub object: Arc<ObjectInfo>,
    pub is_vdso: bool,
    /// The process's main executable (`/proc/PID/exe`).
    pub is_main: bool,
}

impl MappedModule {
    /// The file's own address for a run-time address in this module.
    pub fn svma(&self, avma: u64) -> u64 {
        avma.wrapping_sub(self.bias)
    }

    /// The run-time address of one of the file's own addresses.
    pub fn avma_of(&self, svma: u64) -> u64 {
        svma.wrapping_add(self.bias)
    }

    /// Whether `avma` lies in one of the module's executable mappings.
    pub fn contains_code(&self, avma: u64) -> bool {
        self.exec_avma.iter().any(|range| range.contains(&avma))
    }
}

/// The maps lines of one candidate module, in address order.
#[derive(Debug)]
pub(crate) struct MappingGroup {
    pub entries: Vec<MapEntry>,
}

impl MappingGroup {
    pub fn first(&self) -> Option<&MapEntry> {
        self.entries.first()
    }

    pub fn is_vdso(&self) -> bool {
        self.first().is_some_and(|e| e.path == VDSO_PATH)
    }

    /// The first executable mapping: the one that decides the load bias.
    pub fn first_exec(&self) -> Option<&MapEntry> {
        self.entries.iter().find(|e| e.exec)
    }

    pub fn avma(&self) -> Range<u64> {
        let start = self.entries.iter().map(|e| e.start).min().unwrap_or(0);
        let end = self.entries.iter().map(|e| e.end).max().unwrap_or(0);
        start..end
    }

    pub fn exec_avma(&self) -> Vec<Range<u64>> {
        self.entries
            .iter()
            .filter(|e| e.exec)
            .map(|e| e.start..e.end)
            .collect()
    }
}

/// Groups maps lines into candidate modules: consecutive mappings of the same file (same path,
/// device and inode, with increasing offsets; anonymous mappings such as `.bss` in between do
/// not split a group), and the vdso. Only groups with an executable mapping are returned.
pub(crate) fn group_mappings(entries: &[MapEntry]) -> Vec<MappingGroup> {
    let mut groups: Vec<MappingGroup> = Vec::new();
    let mut open_group: Option<usize> = None;
    for entry in entries {
        if entry.path == VDSO_PATH {
            groups.push(MappingGroup {
                entries: vec![entry.clone()],
            });
            open_group = None;
            continue;
        }
        if !entry.is_file() {
            continue;
        }
        let continues = open_group
            .and_then(|index| groups.get(index))
            .and_then(|group| group.entries.last())
            .is_some_and(|last| same_file(last, entry) && entry.offset >= last.offset);
        match open_group.and_then(|index| groups.get_mut(index)) {
            Some(group) if continues => group.entries.push(entry.clone()),
            _ => {
                open_group = Some(groups.len());
                groups.push(MappingGroup {
                    entries: vec![entry.clone()],
                });
            }
        }
    }
    groups.retain(|group| group.first_exec().is_some());
    groups
}

fn same_file(a: &MapEntry, b: &MapEntry) -> bool {
    a.path == b.path
        && a.inode == b.inode
        && a.dev_major == b.dev_major
        && a.dev_minor == b.dev_minor
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::parse_maps;

    #[test]
    fn groups_files_and_vdso() {
        let maps = parse_maps(
            "\
1000-2000 r--p 00000000 fe:00 10 /bin/app
2000-3000 r-xp 00001000 fe:00 10 /bin/app
3000-4000 rw-p 00002000 fe:00 10 /bin/app
4000-5000 rw-p 00000000 00:00 0
6000-7000 r--p 00000000 fe:00 20 /lib/data.bin
8000-9000 r--p 00000000 fe:00 30 /lib/libc.so
9000-a000 r-xp 00001000 fe:00 30 /lib/libc.so
a000-b000 ---p 00002000 fe:00 30 /lib/libc.so
b000-c000 rw-p 00000000 00:00 0
c000-d000 rw-p 00003000 fe:00 30 /lib/libc.so
d000-e000 r--p 00000000 fe:00 30 /lib/libc.so
e000-f000 r-xp 00001000 fe:00 30 /lib/libc.so
f000-10000 r-xp 00000000 00:00 0 [vdso]
",
        );
        let groups = group_mappings(&maps);
        let summary: Vec<_> = groups
            .iter()
            .map(|g| {
                let exec: Vec<(u64, u64)> =
                    g.exec_avma().iter().map(|r| (r.start, r.end)).collect();
                (g.first().unwrap().path.as_str(), g.avma(), exec)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/bin/app", 0x1000..0x4000, vec![(0x2000, 0x3000)]),
                ("/lib/libc.so", 0x8000..0xd000, vec![(0x9000, 0xa000)]),
                ("/lib/libc.so", 0xd000..0xf000, vec![(0xe000, 0xf000)]),
                ("[vdso]", 0xf000..0x10000, vec![(0xf000, 0x10000)]),
            ]
        );
        assert!(groups[3].is_vdso());
    }
}
