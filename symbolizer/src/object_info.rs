//! [`ObjectInfo`]: one parsed ELF file, symbolized lazily and shared between processes.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use object::Object;

use crate::bytes::Bytes;
use crate::dwarf::{self, DwarfContext};
use crate::elf::{self, Elf, LoadSegment};
use crate::error::Error;
use crate::frame::Frame;
use crate::frame_cache::FrameCache;
use crate::function_starts::FunctionStarts;
use crate::go_frames;
use crate::go_runtime::{self, GoRuntimeLayout};
use crate::go_runtime_code::{self, RuntimeCode};
use crate::gopclntab;
use crate::load_bias;
use crate::minidebuginfo;
use crate::plt::PltTable;
use crate::symbol_table::{SymbolTable, SymbolTableBuilder};
use crate::unwind::UnwindSections;

/// Where a file's separate debug information should be, per its `.gnu_debuglink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLink {
    /// File name (no directory) of the debug file.
    pub file_name: String,
    /// CRC-32 of the whole debug file.
    pub crc: u32,
}

/// The dwz supplementary file named by `.gnu_debugaltlink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugAltLink {
    /// Path, absolute or relative to the directory of the file that names it.
    pub path: String,
    pub build_id: Vec<u8>,
}

/// One parsed ELF file. Cheap to create: headers and notes are read up front; the symbol
/// table, DWARF and unwind sections are read on first use. Internally synchronized, so one
/// instance serves all threads (and all processes that map the same file).
pub struct ObjectInfo {
    name: String,
    data: Bytes,
    build_id: Option<Vec<u8>>,
    go_build_id: Option<String>,
    is_go: bool,
    segments: Vec<LoadSegment>,
    debug_link: Option<DebugLink>,
    debug_alt_link: Option<DebugAltLink>,
    own_dwarf: bool,
    /// Separate debug information (build-id directory, debuglink).
    debug_file: Option<Arc<ObjectInfo>>,
    /// dwz supplementary DWARF referenced by this file's DWARF.
    supplementary: Option<Arc<ObjectInfo>>,
    unwind: OnceLock<UnwindSections>,
    /// Function extents from the unwind tables, read when an address no symbol covers is seen.
    function_starts: OnceLock<FunctionStarts>,
    /// Go binaries: the functions every thread or goroutine stack starts in.
    thread_roots: OnceLock<Vec<std::ops::Range<u64>>>,
    go_stack_switches: OnceLock<Vec<(std::ops::Range<u64>, &'static str)>>,
    /// Go binaries: where the runtime's `g` and `m` keep what stack switches need.
    go_runtime_layout: OnceLock<Option<GoRuntimeLayout>>,
    symbols: OnceLock<SymbolTable>,
    plt: OnceLock<PltTable>,
    dwarf: OnceLock<Option<Mutex<DwarfContext>>>,
    frames: Mutex<FrameCache>,
}

impl std::fmt::Debug for ObjectInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectInfo")
            .field("name", &self.name)
            .field("size", &self.data.len())
            .field("build_id", &self.build_id_hex())
            .field("debug_file", &self.debug_file.as_ref().map(|d| &d.name))
            .finish_non_exhaustive()
    }
}

impl ObjectInfo {
    /// Parses the headers of the ELF image `data`. `name` is for messages only. No I/O.
    pub fn from_bytes(name: &str, data: Bytes) -> Result<ObjectInfo, Error> {
        let headers = Headers::read(name, &data)?;
        Ok(ObjectInfo {
            name: name.to_owned(),
            data,
            build_id: headers.build_id,
            go_build_id: headers.go_build_id,
            is_go: headers.is_go,
            segments: headers.segments,
            debug_link: headers.debug_link,
            debug_alt_link: headers.debug_alt_link,
            own_dwarf: headers.own_dwarf,
            debug_file: None,
            supplementary: None,
            unwind: OnceLock::new(),
            function_starts: OnceLock::new(),
            thread_roots: OnceLock::new(),
            go_stack_switches: OnceLock::new(),
            go_runtime_layout: OnceLock::new(),
            symbols: OnceLock::new(),
            plt: OnceLock::new(),
            dwarf: OnceLock::new(),
            frames: Mutex::default(),
        })
    }

    /// Attaches separate debug information (DWARF, full `.symtab`, `.debug_frame`) found for
    /// this file. The caller is responsible for having checked that it matches (build id or
    /// debuglink CRC).
    pub fn with_debug_file(mut self, debug_file: Arc<ObjectInfo>) -> ObjectInfo {
        self.debug_file = Some(debug_file);
        self
    }

    /// Attaches the dwz supplementary file named by [`ObjectInfo::debug_alt_link`].
    pub fn with_supplementary_file(mut self, supplementary: Arc<ObjectInfo>) -> ObjectInfo {
        self.supplementary = Some(supplementary);
        self
    }

    /// The name given at creation (usually the path as the target sees it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole file image.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The GNU build-id note.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The GNU build id as lowercase hex, the form debuginfod and pprof use.
    pub fn build_id_hex(&self) -> Option<String> {
        self.build_id.as_deref().map(hex)
    }

    /// The Go toolchain's build id (`.note.go.buildid`), for Go binaries.
    pub fn go_build_id(&self) -> Option<&str> {
        self.go_build_id.as_deref()
    }

    /// Built by the Go toolchain.
    pub fn is_go(&self) -> bool {
        self.is_go
    }

    pub fn debug_link(&self) -> Option<&DebugLink> {
        self.debug_link.as_ref()
    }

    pub fn debug_alt_link(&self) -> Option<&DebugAltLink> {
        self.debug_alt_link.as_ref()
    }

    /// The separate debug file attached with [`ObjectInfo::with_debug_file`].
    pub fn debug_file(&self) -> Option<&Arc<ObjectInfo>> {
        self.debug_file.as_ref()
    }

    /// Has DWARF debug information, itself or in its separate debug file.
    pub fn has_dwarf(&self) -> bool {
        self.dwarf_source().is_some()
    }

    /// Drops the file pages read so far from resident memory (see [`Bytes::release_pages`]):
    /// for a process that keeps objects between profiles (serve), what stays resident is the
    /// parsed tables, not every page of names and unwind tables a profile touched.
    pub fn release_pages(&self) {
        self.data.release_pages();
        for other in [&self.debug_file, &self.supplementary]
            .into_iter()
            .flatten()
        {
            other.data.release_pages();
        }
    }

    /// Has at least one function symbol (`.symtab`, `.dynsym`, debug file, MiniDebugInfo).
    pub fn has_symbols(&self) -> bool {
        !self.symbols().is_empty()
    }

    /// The load bias of this file when mapped from `map_offset` at address `map_start`
    /// (`avma = svma + bias`, wrapping), or `None` if no `PT_LOAD` covers that offset. `exec`
    /// says whether the mapping is executable, which picks the segment when two share a page.
    pub fn load_bias(&self, map_offset: u64, map_start: u64, exec: bool) -> Option<u64> {
        load_bias::load_bias(&self.segments, map_offset, map_start, exec)
    }

    /// The address the file's first `PT_LOAD` asks for (0 for PIE and shared objects).
    pub fn first_load_svma(&self) -> Option<u64> {
        self.segments.iter().map(|s| s.vaddr).min()
    }

    /// Whether the file holds `expected` at `svma`, in the file contents of one `PT_LOAD`
    /// segment (code, as the loader maps it). False outside them.
    pub fn has_bytes_at(&self, svma: u64, expected: &[u8]) -> bool {
        self.loaded_bytes(svma, expected.len() as u64) == Some(expected)
    }

    /// The `len` bytes at `svma` in the file contents of one `PT_LOAD` segment; None where
    /// they are not all there.
    fn loaded_bytes(&self, svma: u64, len: u64) -> Option<&[u8]> {
        self.segments.iter().find_map(|segment| {
            let within = svma.checked_sub(segment.vaddr)?;
            if within.checked_add(len)? > segment.file_size {
                return None;
            }
            let start = usize::try_from(segment.offset.checked_add(within)?).ok()?;
            self.data
                .get(start..start.checked_add(usize::try_from(len).ok()?)?)
        })
    }

    /// Sections framehop needs. `debug_frame` comes from the separate debug file when the
    /// binary has none.
    pub fn unwind_sections(&self) -> UnwindSections {
        self.unwind
            .get_or_init(|| {
                let Ok(elf) = self.parse() else {
                    return UnwindSections::default();
                };
                let mut sections = UnwindSections::read(&elf, &self.data, &self.segments);
                if sections.debug_frame.is_none() {
                    sections.debug_frame = self.debug_file.as_ref().and_then(|d| d.debug_frame());
                }
                let mut go_text = None;
                if sections.debug_frame.is_none() && self.is_go {
                    if let Some((frames, covered)) = self.go_debug_frame(&elf) {
                        sections.debug_frame = Some(Bytes::from_vec(frames));
                        go_text = Some(covered);
                    }
                }
                if sections.eh_frame.is_some() && sections.debug_frame.is_some() {
                    sections.debug_frame_only = go_text.or_else(|| self.go_text());
                }
                sections
            })
            .clone()
    }

    /// The SVMAs of a Go program's own code (the Go linker's `runtime.text..runtime.etext`),
    /// apart from the C code a cgo program links with it. None for other files.
    fn go_text(&self) -> Option<std::ops::Range<u64>> {
        let symbols = self.is_go.then(|| self.symbols())?;
        let start = symbols.range_of("runtime.text")?.start;
        let end = symbols.range_of("runtime.etext")?.start;
        (start < end).then_some(start..end)
    }

    /// A Go binary linked without DWARF: the `.debug_frame` its linker would have written,
    /// made from `.gopclntab` ([`go_frames`]), and the code it covers.
    fn go_debug_frame(&self, elf: &Elf<'_>) -> Option<(Vec<u8>, std::ops::Range<u64>)> {
        let (pclntab, text_start) = gopclntab::section(elf, &self.data)?;
        go_frames::debug_frame(&gopclntab::functions(&pclntab, text_start))
    }

    /// `.debug_frame` alone (decompressed), for a separate debug file whose other sections
    /// are not loadable.
    fn debug_frame(&self) -> Option<Bytes> {
        elf::section_bytes(&self.parse().ok()?, &self.data, ".debug_frame")
    }

    /// Where the symbol-table function containing `svma` starts (an SVMA): the "entry" Go's
    /// text profiles print offsets from (`function+0x1c`). None when no symbol covers `svma`.
    pub fn function_entry(&self, svma: u64) -> Option<u64> {
        self.symbols().lookup(svma).map(|(start, _)| start)
    }

    /// The frames at `svma`: innermost (inlined callee) first, the physical function last.
    /// DWARF first (own or separate debug file), then symbol tables. Empty when nothing is
    /// known about the address.
    pub fn symbolize(&self, svma: u64) -> Vec<Frame> {
        if let Some(frames) = lock(&self.frames).get(svma) {
            return frames;
        }
        let frames = self.lookup_guarded(svma);
        lock(&self.frames).insert(svma, frames.clone());
        frames
    }

    /// [`ObjectInfo::lookup`], with a last line of defence: the DWARF parser and demanglers
    /// are third-party code fed untrusted input, and one bad file must cost its names, not the
    /// profiler.
    fn lookup_guarded(&self, svma: u64) -> Vec<Frame> {
        let lookup = std::panic::AssertUnwindSafe(|| self.lookup(svma));
        std::panic::catch_unwind(lookup).unwrap_or_else(|_| {
            tracing::warn!(object = %self.name, svma, "symbolization panicked; address left unnamed");
            Vec::new()
        })
    }

    fn lookup(&self, svma: u64) -> Vec<Frame> {
        let mut frames = self
            .dwarf_source()
            .map(|source| source.dwarf_frames(svma))
            .unwrap_or_default();
        // PLT stubs last: no symbol table covers them, and a symbol that does wins.
        let symbol = || {
            self.symbols()
                .lookup(svma)
                .map(|(_, name)| Frame::from_symbol(&name, None))
                .or_else(|| self.plt().lookup(svma).map(plt_frame))
        };
        match frames.last_mut() {
            None => symbol()
                .or_else(|| self.unwind_table_frame(svma))
                .map(|named| vec![named])
                .unwrap_or_default(),
            Some(physical) => {
                if physical.function.is_none() {
                    if let Some(named) = symbol() {
                        physical.function = named.function;
                        physical.system_name = named.system_name;
                    }
                }
                frames
            }
        }
    }

    /// The start (SVMA) of the function whose unwind table entry covers `svma`: looked up in
    /// `.eh_frame_hdr`'s table, or from every FDE, walked once on first use
    /// ([`FunctionStarts::read`]).
    pub fn function_start(&self, svma: u64) -> Option<u64> {
        self.function_starts
            .get_or_init(|| FunctionStarts::read(&self.unwind_sections()))
            .containing(svma)
    }

    /// Code no symbol names, named after its module and the start of the function the unwind
    /// tables give: `redis-server+0x4c3e0`, module-relative (an SVMA), as addr2line takes it.
    fn unwind_table_frame(&self, svma: u64) -> Option<Frame> {
        let start = self.function_start(svma)?;
        let module = self.name.rsplit('/').next().unwrap_or(&self.name);
        let name = format!("{module}+{start:#x}");
        Some(Frame {
            function: Some(name.clone()),
            system_name: Some(name),
            ..Frame::default()
        })
    }

    /// Functions of Go's runtime that move a thread from a goroutine's stack to its system
    /// stack (g0), by their names (without `.abi0`) and SVMA ranges. Frames of their callers are
    /// on the other stack: an unwinder reading on from them reads g0's memory as if it were
    /// the goroutine's. With them `runtime.systemstack_switch`, whose address systemstack
    /// leaves in the goroutine's saved state as if it were a frame. Empty for other files.
    pub fn go_stack_switches(&self) -> &[(std::ops::Range<u64>, &'static str)] {
        const SWITCHES: &[&str] = &[
            "runtime.systemstack_switch",
            "runtime.systemstack",
            "runtime.mcall",
            "runtime.morestack",
            "runtime.asmcgocall",
        ];
        self.go_stack_switches
            .get_or_init(|| self.go_functions(SWITCHES).collect())
    }

    /// The SVMA ranges of Go runtime functions `names` (each also under its `.abi0` name, as
    /// the assembly ones are), with the name; none for other files.
    fn go_functions<'n>(
        &'n self,
        names: &'n [&'static str],
    ) -> impl Iterator<Item = (std::ops::Range<u64>, &'static str)> + 'n {
        let symbols = self.is_go.then(|| self.symbols());
        names.iter().flat_map(move |&name| {
            let abi0 = format!("{name}.abi0");
            [name, abi0.as_str()]
                .map(|symbol| symbols.and_then(|symbols| symbols.range_of(symbol)))
                .into_iter()
                .flatten()
                .map(move |range| (range, name))
        })
    }

    /// Where stacks begin in this file (SVMAs), for the functions whose frames have no caller
    /// an unwinder can trust. Go's goroutines start in `runtime.goexit` (a fake return address
    /// pushed by the scheduler, below it are heap words), its threads in `runtime.mstart` and the
    /// main thread in `runtime.rt0_go`, none of which ends its unwind info at a root. Empty for
    /// other files: their entry points end their CFI properly.
    pub fn thread_roots(&self) -> &[std::ops::Range<u64>] {
        const GO_ROOTS: &[&str] = &["runtime.goexit", "runtime.mstart", "runtime.rt0_go"];
        self.thread_roots.get_or_init(|| {
            self.go_functions(GO_ROOTS)
                .map(|(range, _)| range)
                .collect()
        })
    }

    /// Where the Go runtime's `g` and `m` structs of this binary hold what a profiler needs to
    /// follow Go's stack switches (g0 and goroutine stacks), read once from the DWARF (own or
    /// the separate debug file's), or, for a binary without (linked with `-ldflags=-w`), from
    /// the runtime's machine code. None for files not built by Go, and where neither gives
    /// them all.
    pub fn go_runtime_layout(&self) -> Option<GoRuntimeLayout> {
        *self.go_runtime_layout.get_or_init(|| {
            if !self.is_go {
                return None;
            }
            self.go_runtime_layout_from_dwarf()
                .or_else(|| self.go_runtime_layout_from_code())
        })
    }

    fn go_runtime_layout_from_dwarf(&self) -> Option<GoRuntimeLayout> {
        let source = self.dwarf_source()?;
        let elf = source.parse().ok()?;
        // Decompressed whole, and dropped once read: Go compresses its DWARF, and the types
        // lie in one unit that can be anywhere in the section.
        let section = |name| dwarf::section_reader(&elf, &source.data, name);
        go_runtime::read(
            &section(".debug_info").into(),
            &section(".debug_abbrev").into(),
            &section(".debug_str").into(),
        )
    }

    /// Without DWARF: from the runtime's own assembly (see [`go_runtime_code`]), found by name
    /// in the symbol table or, stripped of it, in `.gopclntab`.
    fn go_runtime_layout_from_code(&self) -> Option<GoRuntimeLayout> {
        // The functions are a few dozen instructions; more than this is not theirs.
        const MAX_BYTES: u64 = 512;
        let code = |name: &'static str| {
            let (range, _) = self.go_functions(&[name]).next()?;
            let len = range.end.checked_sub(range.start)?.min(MAX_BYTES);
            self.loaded_bytes(range.start, len)
        };
        go_runtime_code::layout(&RuntimeCode {
            systemstack: code("runtime.systemstack")?,
            gosave_systemstack_switch: code("gosave_systemstack_switch")?,
            nanotime1: code("runtime.nanotime1")?,
        })
    }

    /// Where a Go program keeps the running goroutine `g` in thread-local storage, relative to
    /// the thread pointer (FS base). Go's runtime keeps g there on every thread it runs, also
    /// in C code called through cgo (where R14 is not g). A Go program without cgo sets each
    /// thread's FS base itself, to just past `m.tls[0]`: -8, and links no `PT_TLS`. A cgo
    /// one lets the C library place the block and reaches g through the TLS symbol
    /// `runtime.tlsg` (or, linked by Go's own linker, which leaves the symbol out, through a
    /// block of that one word). None for other files, and where the symbol is needed but
    /// stripped (C code's thread-locals linked in as well).
    pub fn go_tls_g_offset(&self) -> Option<i64> {
        const GO_OWN_TLS: i64 = -8;
        if !self.is_go {
            return None;
        }
        let elf = self.parse().ok()?;
        let Some(tls) = elf::tls_segment(&elf) else {
            return Some(GO_OWN_TLS);
        };
        elf::executable_tls_offset(&elf, tls, "runtime.tlsg").or_else(|| {
            // Go's own linker keeps `runtime.tlsg` out of `.symtab`, and links no other TLS:
            // a block of one word is g.
            let block = elf::tls_block_offset(tls.vaddr, tls.mem_size, tls.align)?;
            let block = i64::try_from(block).ok()?;
            (tls.mem_size == 8).then_some(-block)
        })
    }

    /// The object whose DWARF describes this file: itself, or its separate debug file.
    fn dwarf_source(&self) -> Option<&ObjectInfo> {
        if self.own_dwarf {
            return Some(self);
        }
        self.debug_file.as_deref().filter(|debug| debug.own_dwarf)
    }

    fn dwarf_frames(&self, svma: u64) -> Vec<Frame> {
        let context = self.dwarf.get_or_init(|| {
            let elf = self.parse().ok()?;
            let sup = self.supplementary.as_deref();
            let sup_elf = sup.and_then(|sup| sup.parse().ok());
            let sup = sup.zip(sup_elf.as_ref()).map(|(sup, elf)| (elf, &sup.data));
            DwarfContext::new(&elf, &self.data, sup).map(Mutex::new)
        });
        match context {
            Some(context) => lock(context).frames(svma),
            None => Vec::new(),
        }
    }

    pub(crate) fn symbols(&self) -> &SymbolTable {
        self.symbols.get_or_init(|| {
            let Ok(elf) = self.parse() else {
                return SymbolTable::default();
            };
            // One full table is enough, as perf reads them: the file's own `.symtab`, else its
            // debug file's (a superset of `.dynsym` each). Reading both, or `.dynsym` beside
            // them, would only duplicate symbols, whose names must then be read to rank them.
            let mut builder = SymbolTableBuilder::default();
            let mut full = builder.add(&elf, &self.data, false) > 0;
            if let Some(debug) = self.debug_file.as_ref().filter(|_| !full) {
                if let Ok(debug_elf) = debug.parse() {
                    full = builder.add(&debug_elf, &debug.data, false) > 0;
                }
            }
            if !full {
                // MiniDebugInfo holds the local functions `.dynsym` lacks.
                if let Some(mini) = minidebuginfo::extract(&elf, &self.data) {
                    if let Ok(mini_elf) = elf::parse(&self.name, &mini) {
                        builder.add(&mini_elf, &mini, false);
                    }
                }
                builder.add(&elf, &self.data, true);
            }
            // Go linked without a symbol table (`-ldflags=-s`) still names its functions for
            // its own tracebacks.
            if elf.symbols().next().is_none() {
                builder.add_go(&elf, &self.data);
            }
            builder.build()
        })
    }

    /// The PLT stubs, read on first use. From this file only: a separate debug file's PLT
    /// sections are `SHT_NOBITS`.
    fn plt(&self) -> &PltTable {
        self.plt.get_or_init(|| {
            self.parse()
                .map(|elf| PltTable::read(&elf))
                .unwrap_or_default()
        })
    }

    /// Re-parses the ELF headers (cheap: no allocation proportional to the file) to reach
    /// lazily used parts.
    fn parse(&self) -> Result<Elf<'_>, Error> {
        elf::parse(&self.name, &self.data)
    }
}

/// The frame of a PLT stub, named as perf and objdump do: `strtol@plt`. The target symbol is
/// demangled before the suffix is added, since demanglers reject `_Z...@plt`.
fn plt_frame(symbol: &str) -> Frame {
    if symbol == crate::plt::UNKNOWN {
        return Frame::from_symbol(symbol, None);
    }
    Frame {
        function: Some(format!("{}@plt", crate::demangle::demangle(symbol))),
        system_name: Some(format!("{symbol}@plt")),
        ..Frame::default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the caches half-updated in a harmful way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(
        String::with_capacity(bytes.len().saturating_mul(2)),
        |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        },
    )
}

/// What [`ObjectInfo::from_bytes`] reads eagerly: small, and needed to find and cache files.
struct Headers {
    build_id: Option<Vec<u8>>,
    go_build_id: Option<String>,
    is_go: bool,
    segments: Vec<LoadSegment>,
    debug_link: Option<DebugLink>,
    debug_alt_link: Option<DebugAltLink>,
    own_dwarf: bool,
}

impl Headers {
    fn read(name: &str, data: &[u8]) -> Result<Headers, Error> {
        let elf = elf::parse(name, data)?;
        Ok(Headers {
            build_id: elf.build_id().ok().flatten().map(<[u8]>::to_vec),
            go_build_id: elf::go_build_id(&elf),
            is_go: elf::is_go(&elf),
            segments: elf::load_segments(&elf),
            debug_link: debug_link(&elf),
            debug_alt_link: debug_alt_link(&elf),
            own_dwarf: dwarf::has_dwarf(&elf),
        })
    }
}

fn debug_link(elf: &Elf<'_>) -> Option<DebugLink> {
    let (file_name, crc) = elf.gnu_debuglink().ok()??;
    let file_name = std::str::from_utf8(file_name).ok()?;
    // A bare file name: anything with a directory part could point outside the search paths.
    let valid = !file_name.is_empty() && !file_name.contains('/') && file_name != "..";
    valid.then(|| DebugLink {
        file_name: file_name.to_owned(),
        crc,
    })
}

fn debug_alt_link(elf: &Elf<'_>) -> Option<DebugAltLink> {
    let (path, build_id) = elf.gnu_debugaltlink().ok()??;
    Some(DebugAltLink {
        path: std::str::from_utf8(path).ok()?.to_owned(),
        build_id: build_id.to_vec(),
    })
}

// The agent shares objects between its sampling and symbolizing threads.
const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<ObjectInfo>();
    check::<Bytes>();
};
