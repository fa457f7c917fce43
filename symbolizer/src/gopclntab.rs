//! Function names from Go's own symbol table, `.gopclntab`, for Go binaries without `.symtab`.
//!
//! Go programs are often linked with `-ldflags=-s -w` (no ELF symbol table, no DWARF: what
//! `go run` and most container images do), yet they keep `.gopclntab`, the table Go's runtime
//! uses for its own tracebacks: every function's entry and name. Formats read: Go 1.16–1.17
//! (magic `0xfffffffa`) and 1.18 onwards (`0xfffffff0`, `0xfffffff1`), 64-bit little-endian.
//! The layout is `runtime/symtab.go`'s `pcHeader`, `functab` and `_func`.
//!
//! Everything here comes from the file: offsets are checked, the function count is bounded.

/// More functions than any Go binary has (kubelet: ~100 000).
const MAX_FUNCTIONS: usize = 4_000_000;
/// A function name longer than this is cut (real ones are under 1 KiB).
const MAX_NAME: usize = 4096;
/// All names together: a crafted table can point every entry at one long name, and names are
/// copied (the largest real tables hold ~10 MiB of names).
const MAX_NAME_BYTES: usize = 64 << 20;

/// One function: its entry and end (the next function's entry), link-time addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoFunction<'a> {
    pub start: u64,
    pub end: u64,
    pub name: &'a str,
    /// Its `pcsp` table (how far SP is below the entry's at each pc, see [`sp_runs`]): the
    /// table's bytes from its start to the end of `pctab`; empty if it has none.
    pub sp_table: &'a [u8],
}

/// The Go linker's instruction quantum on amd64 (`sys.PCQuantum`).
const PC_QUANTUM: u64 = 1;

/// Steps of the `pcsp` tables read at most, all functions together: a table has at most one
/// per byte of its function, and the largest Go binaries are a few hundred MiB of code. Tables
/// come from the file, and crafted functions can share one long table.
pub(crate) const MAX_STEPS: usize = 1 << 26;

/// A run of a function's code over which SP stays `sp_delta` bytes below its value at entry
/// (after the call pushed the return address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpRun {
    pub start: u64,
    pub end: u64,
    pub sp_delta: u64,
}

/// The runs of `function`'s `pcsp` table, as Go's runtime reads it (`runtime.step`): pairs of
/// a zig-zag varint value delta (from -1) and a varint pc delta (in quanta), each value holding
/// up to the pc after it, until a zero value delta. Cut at the function's end; empty for a
/// malformed table (a step that does not advance, as Go's linker never writes one). Each step
/// takes one of `budget`; none left is a malformed table too.
pub(crate) fn sp_runs(function: &GoFunction<'_>, budget: &mut usize) -> Vec<SpRun> {
    let mut runs = Vec::new();
    let (mut table, mut pc, mut value) = (function.sp_table, function.start, -1i64);
    for step in 0.. {
        let Some(left) = budget.checked_sub(1) else {
            return Vec::new();
        };
        *budget = left;
        let Some((value_delta, rest)) = varint(table) else {
            break;
        };
        if value_delta == 0 && step > 0 {
            break;
        }
        let Some((pc_delta, rest)) = varint(rest).filter(|&(delta, _)| delta > 0) else {
            return Vec::new();
        };
        table = rest;
        value += i64::from((value_delta >> 1) as i32 ^ -((value_delta & 1) as i32));
        let Some(end) = u64::from(pc_delta)
            .checked_mul(PC_QUANTUM)
            .and_then(|delta| pc.checked_add(delta))
        else {
            return Vec::new();
        };
        let end = end.min(function.end);
        if let Ok(sp_delta) = u64::try_from(value) {
            if pc < end {
                runs.push(SpRun {
                    start: pc,
                    end,
                    sp_delta,
                });
            }
        } else {
            return Vec::new();
        }
        pc = end;
        if pc >= function.end {
            break;
        }
    }
    runs
}

/// A little-endian base-128 varint of at most 32 bits, and what follows it.
fn varint(data: &[u8]) -> Option<(u32, &[u8])> {
    let mut value = 0u32;
    for (i, &byte) in data.iter().enumerate().take(5) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &data[i + 1..]));
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Go 1.16 and 1.17: absolute entries in the functab.
    Go116,
    /// Go 1.18 onwards: 32-bit entry offsets from `textStart`.
    Go118,
}

/// The binary's `.gopclntab` (PIE builds put it in a section of relocated read-only data),
/// and the address of its `.text`, the base of a PIE table's entries.
pub(crate) fn section(
    elf: &crate::elf::Elf<'_>,
    file: &crate::bytes::Bytes,
) -> Option<(crate::bytes::Bytes, u64)> {
    use object::{Object, ObjectSection};
    let pclntab = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .find_map(|name| crate::elf::section_bytes(elf, file, name))?;
    let text_start = elf.section_by_name(".text").map_or(0, |s| s.address());
    Some((pclntab, text_start))
}

/// The functions of `pclntab` (the section's bytes). `text_start` is the `.text` section's
/// address, for a table whose own `textStart` is left to a relocation (PIE).
pub(crate) fn functions(pclntab: &[u8], text_start: u64) -> Vec<GoFunction<'_>> {
    read(pclntab, text_start).unwrap_or_default()
}

fn read(data: &[u8], text_start: u64) -> Option<Vec<GoFunction<'_>>> {
    let version = match u32_at(data, 0)? {
        0xffff_fffa => Version::Go116,
        0xffff_fff0 | 0xffff_fff1 => Version::Go118,
        _ => return None,
    };
    // pad1, pad2, minLC, then the pointer size: only 64-bit tables are read.
    if *data.get(7)? != 8 {
        return None;
    }
    let word = |index: usize| u64_at(data, 8 + 8 * index);
    let nfunc = usize::try_from(word(0)?).ok()?.min(MAX_FUNCTIONS);
    let (text, funcnames, pctab, pcln) = match version {
        Version::Go116 => (0, word(2)?, word(5)?, word(6)?),
        Version::Go118 => {
            let own = word(2)?;
            let text = if own != 0 { own } else { text_start };
            (text, word(3)?, word(6)?, word(7)?)
        }
    };
    let funcnames = data.get(usize::try_from(funcnames).ok()?..)?;
    let pctab = usize::try_from(pctab)
        .ok()
        .filter(|&at| at != 0)
        .and_then(|at| data.get(at..))
        .unwrap_or_default();
    let pcln = data.get(usize::try_from(pcln).ok()?..)?;
    // Where `_func.pcsp` is: after entry (8 bytes before 1.18, 4 since), nameoff, args and
    // deferreturn.
    let pcsp_field = match version {
        Version::Go116 => 20,
        Version::Go118 => 16,
    };
    let mut functions = Vec::with_capacity(nfunc.min(1 << 16));
    let mut name_bytes = 0usize;
    for index in 0..nfunc {
        let Some((start, end, func)) = entry(pcln, version, index, text) else {
            break;
        };
        let name_at = func.checked_add(match version {
            Version::Go116 => 8,
            Version::Go118 => 4,
        });
        let Some(name_offset) = name_at.and_then(|at| i32_at(pcln, at)) else {
            break;
        };
        let name = usize::try_from(name_offset)
            .ok()
            .and_then(|at| c_string(funcnames, at));
        let Some(name) = name else {
            continue;
        };
        name_bytes = name_bytes.saturating_add(name.len());
        if name_bytes > MAX_NAME_BYTES {
            break;
        }
        let sp_table = func
            .checked_add(pcsp_field)
            .and_then(|at| u32_at(pcln, at))
            .filter(|&offset| offset != 0)
            .and_then(|offset| pctab.get(usize::try_from(offset).ok()?..))
            .unwrap_or_default();
        if start < end && !name.is_empty() {
            functions.push(GoFunction {
                start,
                end,
                name,
                sp_table,
            });
        }
    }
    Some(functions)
}

/// Function `index`'s entry, the next one's (its end), and where its `_func` lies in `pcln`.
fn entry(pcln: &[u8], version: Version, index: usize, text: u64) -> Option<(u64, u64, usize)> {
    match version {
        Version::Go116 => {
            let at = index.checked_mul(16)?;
            let start = u64_at(pcln, at)?;
            let func = usize::try_from(u64_at(pcln, at + 8)?).ok()?;
            let end = u64_at(pcln, at + 16)?;
            Some((start, end, func))
        }
        Version::Go118 => {
            let at = index.checked_mul(8)?;
            let start = text.checked_add(u64::from(u32_at(pcln, at)?))?;
            let func = usize::try_from(u32_at(pcln, at + 4)?).ok()?;
            let end = text.checked_add(u64::from(u32_at(pcln, at + 8)?))?;
            Some((start, end, func))
        }
    }
}

fn c_string(data: &[u8], at: usize) -> Option<&str> {
    let rest = data.get(at..)?;
    let rest = &rest[..rest.len().min(MAX_NAME)];
    let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..len]).ok()
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn i32_at(data: &[u8], at: usize) -> Option<i32> {
    u32_at(data, at).map(|v| v as i32)
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Go 1.18-layout table of two functions at text 0x401000: `main.a` [0x401000, 0x401040)
    /// and `main.b` [0x401040, 0x401100).
    fn table_118(text_start_in_header: u64) -> Vec<u8> {
        let mut data = vec![0u8; 8 + 8 * 8];
        data[..4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        data[7] = 8;
        let funcnames = data.len() as u64;
        let names = b"main.a\0main.b\0";
        let pcln = funcnames + names.len() as u64;
        let words = [2, 0, text_start_in_header, funcnames, 0, 0, 0, pcln];
        for (i, w) in words.iter().enumerate() {
            data[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(names);
        // functab: 3 entries (the last is the end), then two _func records at 24 and 32.
        for (entryoff, funcoff) in [(0u32, 24u32), (0x40, 32), (0x100, 0)] {
            data.extend_from_slice(&entryoff.to_le_bytes());
            data.extend_from_slice(&funcoff.to_le_bytes());
        }
        for (entryoff, nameoff) in [(0u32, 0i32), (0x40, 7)] {
            data.extend_from_slice(&entryoff.to_le_bytes());
            data.extend_from_slice(&nameoff.to_le_bytes());
        }
        data
    }

    #[test]
    fn go_118_functions_are_read_with_their_extents() {
        let expected = vec![
            GoFunction {
                start: 0x401000,
                end: 0x401040,
                name: "main.a",
                sp_table: &[],
            },
            GoFunction {
                start: 0x401040,
                end: 0x401100,
                name: "main.b",
                sp_table: &[],
            },
        ];
        assert_eq!(functions(&table_118(0x401000), 0), expected);
        // textStart left to a relocation (PIE): the .text address stands in.
        assert_eq!(functions(&table_118(0), 0x401000), expected);
    }

    #[test]
    fn cut_or_foreign_tables_give_nothing_or_what_was_whole() {
        let table = table_118(0x401000);
        assert!(functions(&table[..20], 0).is_empty());
        assert!(functions(b"not a pclntab at all", 0).is_empty());
        // Cut inside the second _func: the first function is still named.
        let cut = &table[..table.len() - 4];
        assert_eq!(functions(cut, 0).len(), 1);
        let mut wrong_magic = table.clone();
        wrong_magic[0] = 0;
        assert!(functions(&wrong_magic, 0).is_empty());
    }
}
