//! Finding the target's allocators: the files it maps that define `malloc`, and in each the
//! functions of [`FUNCTIONS`] with the instruction to probe.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use rprof_symbolizer::maps;
use rprof_symbolizer::Bytes;

use super::entry::probe_offset;
use super::functions::{allocator_name, call_of, Call, FUNCTIONS, MARKERS};
use crate::kinds::threadcreate::probes::{code_range, mapped_files};
use crate::kinds::threadcreate::symbols::find_functions;

/// Bytes of a function read to choose its probe's instruction.
const CODE_BYTES: usize = 96;

/// One allocation function in one file the target maps.
#[derive(Debug, Clone)]
pub struct AllocFunction {
    /// The file, as the target's maps name it.
    pub path: String,
    /// The allocator the file is (glibc, jemalloc, ...).
    pub allocator: &'static str,
    /// One of [`FUNCTIONS`].
    pub name: &'static str,
    pub call: Call,
    /// File offset of the probed instruction.
    pub offset: u64,
    /// The kernel emulates the probed instruction (else it single-steps it: ~30× costlier).
    pub emulated: bool,
    /// The function's code in the target's address space, when known: a hit whose caller is
    /// another probed function is that function's allocation seen a second time.
    pub code: Option<Range<u64>>,
    /// The file the offset was computed from, held open: the kernel probes this very inode
    /// through `/proc/self/fd/N` (see [`AllocFunction::probe_path`]).
    file: Arc<File>,
}

impl AllocFunction {
    /// The path the kernel resolves (in the agent's context) to the probed file.
    pub fn probe_path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }
}

impl fmt::Display for AllocFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.name, self.path)
    }
}

/// Every allocation function of every allocator process `pid` maps. Files that cannot be read
/// are skipped; only unreadable maps are an error.
pub fn find_allocators(pid: u32) -> io::Result<Vec<AllocFunction>> {
    let entries = maps::read_maps(pid)?;
    let mut found = Vec::new();
    for mappings in mapped_files(&entries) {
        let first = mappings[0];
        match rprof_symbolizer::open_mapping(pid, first) {
            Ok(file) => found.extend(functions_in(file, &first.path, &mappings)),
            Err(error) => tracing::debug!(pid, path = first.path, %error, "cannot open to probe"),
        }
    }
    Ok(in_use(found))
}

/// The functions of the allocators in use: a jemalloc, tcmalloc or mimalloc that the target
/// maps takes every call to `malloc` (the dynamic linker binds the program's and libc's own
/// calls to the first definition, and such a library comes before libc), so glibc's copies
/// are left unprobed: every probe costs the target an event per thread and CPU per window.
/// A program that calls glibc's functions by another name (`__libc_malloc`) is not seen then.
fn in_use(found: Vec<AllocFunction>) -> Vec<AllocFunction> {
    let interposed = found
        .iter()
        .any(|f| f.allocator != "glibc" && f.name == "malloc");
    if !interposed {
        return found;
    }
    found
        .into_iter()
        .filter(|f| f.allocator != "glibc")
        .collect()
}

/// The allocation functions `file` defines, if it defines `malloc`.
fn functions_in(
    file: File,
    path: &str,
    mappings: &[&rprof_symbolizer::maps::MapEntry],
) -> Vec<AllocFunction> {
    let data = match Bytes::map_file(&file) {
        Ok(data) => data,
        Err(error) => {
            tracing::debug!(path, %error, "cannot map to probe");
            return Vec::new();
        }
    };
    let names: Vec<&str> = FUNCTIONS.iter().map(|(name, _)| *name).collect();
    let symbols = find_functions(&data, &names);
    if !symbols.iter().any(|(name, _)| *name == "malloc") {
        return Vec::new();
    }
    // One marker at a time: an allocator aliases them (tcmalloc's `tc_malloc` and
    // `__libc_malloc` are its `malloc`), and a lookup of several keeps one name per address.
    let markers: Vec<&str> = MARKERS
        .iter()
        .copied()
        .filter(|marker| !find_functions(&data, &[marker]).is_empty())
        .collect();
    let allocator = allocator_name(&markers);
    let file = Arc::new(file);
    symbols
        .into_iter()
        .filter_map(|(name, symbol)| {
            let call = call_of(name)?;
            let start = usize::try_from(symbol.file_offset).ok()?;
            let code = data.get(start..start.saturating_add(CODE_BYTES).min(data.len()))?;
            let (skip, emulated) = probe_offset(code, call.argument_registers());
            Some(AllocFunction {
                path: path.to_owned(),
                allocator,
                name,
                call,
                offset: symbol.file_offset + skip,
                emulated,
                code: code_range(mappings, &symbol),
                file: Arc::clone(&file),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process maps glibc.
    #[test]
    fn glibc_is_found_with_its_whole_family() {
        let found = find_allocators(std::process::id()).unwrap();
        let malloc = found
            .iter()
            .find(|f| f.name == "malloc")
            .unwrap_or_else(|| panic!("no malloc among {found:?}"));
        assert_eq!(malloc.allocator, "glibc");
        let here = libc::malloc as *const () as u64;
        assert!(malloc.code.as_ref().is_some_and(|c| c.contains(&here)));
        for name in ["calloc", "realloc", "free", "posix_memalign"] {
            assert!(found.iter().any(|f| f.name == name), "{name} missing");
        }
        for name in ["malloc", "calloc", "realloc", "free"] {
            let function = found.iter().find(|f| f.name == name).unwrap();
            assert!(function.emulated, "{function:?} would be single-stepped");
        }
        assert!(malloc.probe_path().starts_with("/proc/self/fd/"));
    }
}
