//! DWARF line and inline information, through addr2line, read straight from [`Bytes`].

use std::collections::HashMap;

use object::Object;

use crate::bytes::Bytes;
use crate::elf::{self, Elf};
use crate::frame::Frame;

/// gimli reader over our shared bytes: no copies of uncompressed sections, no borrows.
pub(crate) type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// Inline nesting deeper than this is cut (real code rarely exceeds 20 levels).
const MAX_INLINE_DEPTH: usize = 128;

/// Demangled names kept per file. Functions have many addresses, and demangling a long Rust or
/// C++ name costs more than the rest of a lookup; when full, the map starts over.
const MAX_CACHED_NAMES: usize = 64 * 1024;

/// A lazily built addr2line context for one file's DWARF.
pub(crate) struct DwarfContext {
    context: addr2line::Context<Reader>,
    /// Raw linkage name -> demangled name.
    demangled: HashMap<String, String>,
}

impl DwarfContext {
    /// Loads the DWARF sections of `elf` (whose bytes are `file`), plus those of a
    /// supplementary (`.gnu_debugaltlink`, dwz) file when given. Parses unit headers only;
    /// units themselves are parsed on first lookup.
    pub fn new(elf: &Elf<'_>, file: &Bytes, sup: Option<(&Elf<'_>, &Bytes)>) -> Option<Self> {
        let mut dwarf = load_dwarf(elf, file)?;
        if let Some((sup_elf, sup_file)) = sup {
            if let Some(sup_dwarf) = load_dwarf(sup_elf, sup_file) {
                dwarf.set_sup(sup_dwarf);
            }
        }
        match addr2line::Context::from_dwarf(dwarf) {
            Ok(context) => Some(DwarfContext {
                context,
                demangled: HashMap::new(),
            }),
            Err(err) => {
                tracing::debug!(%err, "unusable DWARF");
                None
            }
        }
    }

    /// Frames for `svma`, innermost first. Empty when no unit covers the address. Frames
    /// without a function name are kept (the caller may name them from the symbol table).
    pub fn frames(&mut self, svma: u64) -> Vec<Frame> {
        // addr2line probes [svma, svma + 1), which overflows for the last address.
        if svma == u64::MAX {
            return Vec::new();
        }
        let mut iter = match self.context.find_frames(svma).skip_all_loads() {
            Ok(iter) => iter,
            Err(err) => {
                tracing::trace!(%err, svma, "DWARF lookup failed");
                return Vec::new();
            }
        };
        let mut frames = Vec::new();
        while frames.len() < MAX_INLINE_DEPTH {
            match iter.next() {
                Ok(Some(frame)) => frames.push(convert(&frame, &mut self.demangled)),
                Ok(None) => break,
                Err(err) => {
                    tracing::trace!(%err, svma, "DWARF frame iteration failed");
                    break;
                }
            }
        }
        let count = frames.len();
        for frame in frames.iter_mut().take(count.saturating_sub(1)) {
            frame.inlined = true;
        }
        frames
    }
}

fn convert(frame: &addr2line::Frame<'_, Reader>, demangled: &mut HashMap<String, String>) -> Frame {
    let (function, system_name) = match frame.function.as_ref().map(|f| (f.raw_name(), f.language))
    {
        Some((Ok(raw), language)) => {
            let function = match demangled.get(raw.as_ref()) {
                Some(name) => name.clone(),
                None => {
                    let name = crate::demangle::demangle_as(&raw, language);
                    if demangled.len() >= MAX_CACHED_NAMES {
                        demangled.clear();
                    }
                    demangled.insert(raw.clone().into_owned(), name.clone());
                    name
                }
            };
            (Some(function), Some(raw.into_owned()))
        }
        _ => (None, None),
    };
    let (file, line) = match &frame.location {
        Some(location) => (location.file.map(str::to_owned), location.line),
        None => (None, None),
    };
    Frame {
        function,
        system_name,
        file,
        line,
        inlined: false,
    }
}

/// Whether the file carries DWARF debug information (not just unwind tables).
pub(crate) fn has_dwarf(elf: &Elf<'_>) -> bool {
    elf::has_section_data(elf, ".debug_info") || elf::has_section_data(elf, ".zdebug_info")
}

fn load_dwarf(elf: &Elf<'_>, file: &Bytes) -> Option<gimli::Dwarf<Reader>> {
    if !has_dwarf(elf) {
        return None;
    }
    let endian = if elf.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let data = elf::section_bytes(elf, file, id.name()).unwrap_or_else(Bytes::empty);
        Ok(gimli::EndianReader::new(data, endian))
    };
    gimli::Dwarf::load(load).ok()
}
