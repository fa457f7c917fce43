//! Where to probe: the thread-creation functions defined by the files a target maps.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use rprof_symbolizer::maps::{self, MapEntry};
use rprof_symbolizer::Bytes;

use super::symbols::{find_functions, FunctionSymbol};
use crate::sampler::Uprobe;

/// The functions every new thread goes through. `pthread_create` covers C, C++ `std::thread`
/// and Rust `std::thread` (anything on a libc); Go creates its OS threads with
/// `runtime.newosproc` (a bare clone), or through `pthread_create` when cgo is on.
pub const CREATION_FUNCTIONS: [&str; 2] = ["pthread_create", "runtime.newosproc"];

/// One thread-creation function in one file the target maps.
#[derive(Debug, Clone)]
pub struct ProbePoint {
    /// The file, as the target's maps name it.
    pub path: String,
    /// One of [`CREATION_FUNCTIONS`].
    pub function: &'static str,
    /// File offset of the function's first instruction.
    pub offset: u64,
    /// The function's code in the target's address space, when known: a hit whose callers
    /// include another probed function is that function's creation seen a second time.
    pub code: Option<Range<u64>>,
    /// The very file the offset was computed from, held open for the kernel (see `uprobe`).
    file: Arc<File>,
}

impl ProbePoint {
    /// The uprobe to sample. Its path is `/proc/self/fd/N` of the file this point was parsed
    /// from, so the kernel probes exactly that inode whatever became of the path (a library
    /// upgraded since it was mapped, another mount namespace): keep `self` alive until the
    /// sampler is open.
    pub fn uprobe(&self) -> Uprobe {
        Uprobe {
            path: CString::new(self.probe_path()).unwrap_or_default(),
            offset: self.offset,
            name: self.to_string(),
        }
    }
}

impl ProbePoint {
    /// The path the kernel resolves, in the agent's context, to the very file this point was
    /// parsed from (for a uprobe event, or a tracefs definition written by the agent).
    pub fn probe_path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }
}

impl fmt::Display for ProbePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.function, self.path)
    }
}

/// Every thread-creation function defined by a file that process `pid` maps executable.
/// Files that cannot be opened or parsed are skipped; only unreadable maps are an error.
pub fn probes_of_process(pid: u32) -> io::Result<Vec<ProbePoint>> {
    let entries = maps::read_maps(pid)?;
    let mut probes = Vec::new();
    for mappings in mapped_files(&entries) {
        let first = mappings[0];
        match rprof_symbolizer::open_mapping(pid, first) {
            Ok(file) => probes.extend(probes_in(file, &first.path, &mappings)),
            Err(error) => tracing::debug!(pid, path = first.path, %error, "cannot open to probe"),
        }
    }
    Ok(probes)
}

/// The probes for a command that `pid` is about to exec (it is still a copy of the agent):
/// the libraries the agent maps, which the command maps too on the same host, and the
/// command's executable (`program`, looked up in `PATH` like execvp does). Where the command
/// will map them is not known yet.
pub fn probes_of_command(pid: u32, program: &str) -> io::Result<Vec<ProbePoint>> {
    let mut probes = probes_of_process(pid)?;
    for probe in &mut probes {
        probe.code = None;
    }
    let executable = crate::launch::find_program(program).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{program} not found in PATH"),
        )
    })?;
    let file = File::open(&executable)?;
    let identity = file_identity(&file)?;
    let already_probed = probes
        .iter()
        .any(|p| file_identity(&p.file).is_ok_and(|id| id == identity));
    if !already_probed {
        probes.extend(probes_in(file, &executable.to_string_lossy(), &[]));
    }
    Ok(probes)
}

/// The executable mappings grouped by file (device and inode), each group led by the file's
/// first executable mapping, in address order.
pub(crate) fn mapped_files(entries: &[MapEntry]) -> Vec<Vec<&MapEntry>> {
    let mut files: Vec<Vec<&MapEntry>> = Vec::new();
    for entry in entries.iter().filter(|e| e.exec && e.is_file()) {
        let same_file = |group: &&mut Vec<&MapEntry>| {
            let first = group[0];
            (first.inode, first.dev_major, first.dev_minor)
                == (entry.inode, entry.dev_major, entry.dev_minor)
        };
        match files.iter_mut().find(same_file) {
            Some(group) => group.push(entry),
            None => files.push(vec![entry]),
        }
    }
    files
}

/// The creation functions `file` defines. `mappings` (the file's executable mappings in the
/// target) place them in the target's address space.
fn probes_in(file: File, path: &str, mappings: &[&MapEntry]) -> Vec<ProbePoint> {
    let data = match Bytes::map_file(&file) {
        Ok(data) => data,
        Err(error) => {
            tracing::debug!(path, %error, "cannot map to probe");
            return Vec::new();
        }
    };
    let file = Arc::new(file);
    find_functions(&data, &CREATION_FUNCTIONS)
        .into_iter()
        .map(|(function, symbol)| ProbePoint {
            path: path.to_owned(),
            function,
            offset: symbol.file_offset,
            code: code_range(mappings, &symbol),
            file: Arc::clone(&file),
        })
        .collect()
}

/// Where a mapping of the file puts the function's code.
pub(crate) fn code_range(mappings: &[&MapEntry], symbol: &FunctionSymbol) -> Option<Range<u64>> {
    mappings.iter().find_map(|mapping| {
        let delta = symbol.file_offset.checked_sub(mapping.offset)?;
        if delta >= mapping.end.saturating_sub(mapping.start) {
            return None;
        }
        let start = mapping.start.checked_add(delta)?;
        Some(start..start.saturating_add(symbol.size.max(1)))
    })
}

/// (device, inode): what makes two open files the same file.
fn file_identity(file: &File) -> io::Result<(u64, u64)> {
    let metadata = file.metadata()?;
    Ok((metadata.dev(), metadata.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process maps libc, which defines pthread_create.
    #[test]
    fn this_process_creates_threads_through_libc() {
        let probes = probes_of_process(std::process::id()).unwrap();
        let pthread_create = probes
            .iter()
            .find(|p| p.function == "pthread_create")
            .unwrap_or_else(|| panic!("no pthread_create among {probes:?}"));
        let code = pthread_create.code.clone().expect("libc is mapped");
        // The range holds pthread_create as this process runs it.
        let here = libc::pthread_create as *const () as u64;
        assert!(code.contains(&here), "{code:x?} vs {here:#x}");
        let uprobe = pthread_create.uprobe();
        assert!(uprobe.path.to_str().unwrap().starts_with("/proc/self/fd/"));
        assert_eq!(uprobe.offset, pthread_create.offset);
        assert!(
            uprobe.name.starts_with("pthread_create in /"),
            "{}",
            uprobe.name
        );
    }

    #[test]
    fn a_command_adds_its_executable_without_addresses() {
        // `true` links libc dynamically and defines no creation function of its own.
        let probes = probes_of_command(std::process::id(), "true").unwrap();
        assert!(probes.iter().any(|p| p.function == "pthread_create"));
        assert!(probes.iter().all(|p| p.code.is_none()));
        assert!(probes_of_command(std::process::id(), "no-such-program-here").is_err());
    }

    #[test]
    fn mappings_of_one_file_group_together() {
        let entries = maps::parse_maps(
            "\
1000-2000 r-xp 00001000 fe:00 10 /bin/app
3000-4000 r-xp 00003000 fe:00 10 /bin/app
5000-6000 r-xp 00000000 fe:00 20 /lib/libc.so
7000-8000 rw-p 00000000 00:00 0
",
        );
        let files = mapped_files(&entries);
        let starts: Vec<Vec<u64>> = files
            .iter()
            .map(|group| group.iter().map(|e| e.start).collect())
            .collect();
        assert_eq!(starts, vec![vec![0x1000, 0x3000], vec![0x5000]]);
        let symbol = FunctionSymbol {
            address: 0x3100,
            size: 0x20,
            file_offset: 0x3100,
        };
        assert_eq!(code_range(&files[0], &symbol), Some(0x3100..0x3120));
        let outside = FunctionSymbol {
            file_offset: 0x9000,
            ..symbol
        };
        assert_eq!(code_range(&files[0], &outside), None);
    }
}
