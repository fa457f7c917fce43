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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Go 1.16 and 1.17: absolute entries in the functab.
    Go116,
    /// Go 1.18 onwards: 32-bit entry offsets from `textStart`.
    Go118,
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
    let (text, funcnames, pcln) = match version {
        Version::Go116 => (0, word(2)?, word(6)?),
        Version::Go118 => {
            let own = word(2)?;
            (if own != 0 { own } else { text_start }, word(3)?, word(7)?)
        }
    };
    let funcnames = data.get(usize::try_from(funcnames).ok()?..)?;
    let pcln = data.get(usize::try_from(pcln).ok()?..)?;
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
        if start < end && !name.is_empty() {
            functions.push(GoFunction { start, end, name });
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
            },
            GoFunction {
                start: 0x401040,
                end: 0x401100,
                name: "main.b",
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
