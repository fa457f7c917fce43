//! DWARF line and inline information, through addr2line, read straight from [`Bytes`].

use std::collections::HashMap;

use gimli::{Reader as _, Section as _};
use object::{Object, ObjectSection};

use crate::bytes::Bytes;
use crate::elf::{self, Elf};
use crate::frame::Frame;
use crate::seekable_zlib::SeekableZlib;
use crate::units::{Sections, UnitContexts};

/// gimli reader over our shared bytes: no copies of uncompressed sections, no borrows.
pub(crate) type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// Inline nesting deeper than this is cut (real code rarely exceeds 20 levels).
const MAX_INLINE_DEPTH: usize = 128;

/// Demangled names kept per file. Functions have many addresses, and demangling a long Rust or
/// C++ name costs more than the rest of a lookup; when full, the map starts over.
const MAX_CACHED_NAMES: usize = 64 * 1024;

/// A lazily built addr2line context for one file's DWARF.
///
/// addr2line parses every unit's abbreviations and line program header up front, which for a
/// libc debug file is ~30 MB to name two frames. So where units stand alone (no reference
/// from one unit into another: no `DW_FORM_ref_addr`, no partial units, no dwz file), only an
/// index of unit address ranges is built, and each unit an address falls in gets a context of
/// its own over just that unit, on first use. Files whose units refer to each other (Rust, LTO
/// builds) get one context over everything.
pub(crate) struct DwarfContext {
    lookup: Lookup,
    /// Raw linkage name -> demangled name.
    demangled: HashMap<String, String>,
}

enum Lookup {
    PerUnit(Box<UnitContexts>),
    Whole(Box<addr2line::Context<Reader>>),
}

impl DwarfContext {
    /// Loads the DWARF sections of `elf` (whose bytes are `file`), plus those of a
    /// supplementary (`.gnu_debugaltlink`, dwz) file when given, and indexes its units.
    pub fn new(elf: &Elf<'_>, file: &Bytes, sup: Option<(&Elf<'_>, &Bytes)>) -> Option<Self> {
        let (sections, info) = load_sections(elf, file)?;
        let sup = sup
            .and_then(|(sup_elf, sup_file)| load_sections(sup_elf, sup_file))
            .and_then(|(sections, info)| with_info(sections, info));
        let lookup = match sup {
            None => match UnitContexts::new(sections, info) {
                Ok(units) => Lookup::PerUnit(Box::new(units)),
                Err((sections, info)) => whole(&with_info(sections, info)?, None)?,
            },
            Some(sup) => whole(&with_info(sections, info)?, Some(&sup))?,
        };
        Some(DwarfContext {
            lookup,
            demangled: HashMap::new(),
        })
    }

    /// Frames for `svma`, innermost first. Empty when no unit covers the address. Frames
    /// without a function name are kept (the caller may name them from the symbol table).
    pub fn frames(&mut self, svma: u64) -> Vec<Frame> {
        // addr2line probes [svma, svma + 1), which overflows for the last address.
        if svma == u64::MAX {
            return Vec::new();
        }
        match &mut self.lookup {
            Lookup::Whole(context) => frames_in(context, svma, &mut self.demangled),
            Lookup::PerUnit(units) => {
                for unit in units.covering(svma) {
                    let Some(context) = units.context(unit) else {
                        continue;
                    };
                    let frames = frames_in(context, svma, &mut self.demangled);
                    if !frames.is_empty() {
                        return frames;
                    }
                }
                Vec::new()
            }
        }
    }
}

fn whole(sections: &Sections, sup: Option<&Sections>) -> Option<Lookup> {
    let mut dwarf = sections.borrow(Clone::clone);
    if let Some(sup) = sup {
        dwarf.set_sup(sup.borrow(Clone::clone));
    }
    match addr2line::Context::from_dwarf(dwarf) {
        Ok(context) => Some(Lookup::Whole(Box::new(context))),
        Err(err) => {
            tracing::debug!(%err, "unusable DWARF");
            None
        }
    }
}

fn frames_in(
    context: &addr2line::Context<Reader>,
    svma: u64,
    demangled: &mut HashMap<String, String>,
) -> Vec<Frame> {
    let mut iter = match context.find_frames(svma).skip_all_loads() {
        Ok(iter) => iter,
        Err(err) => {
            tracing::trace!(%err, svma, "DWARF lookup failed");
            return Vec::new();
        }
    };
    let mut frames = Vec::new();
    while frames.len() < MAX_INLINE_DEPTH {
        match iter.next() {
            Ok(Some(frame)) => frames.push(convert(&frame, demangled)),
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

/// Sections addr2line never reads (location lists, macros, type units, name indexes): not
/// loaded, so not decompressed.
const UNUSED_SECTIONS: [gimli::SectionId; 6] = [
    gimli::SectionId::DebugLoc,
    gimli::SectionId::DebugLocLists,
    gimli::SectionId::DebugMacinfo,
    gimli::SectionId::DebugMacro,
    gimli::SectionId::DebugNames,
    gimli::SectionId::DebugTypes,
];

/// Compressed `.debug_info` sections at least this big (decompressed) are kept compressed
/// and read a unit at a time ([`SeekableZlib`]); smaller ones are decompressed whole.
const SEEKABLE_INFO: u64 = 1 << 20;

/// The file's DWARF sections, loaded (and decompressed) whole but for a big zlib-compressed
/// `.debug_info`, which is returned apart (and left empty in the sections).
fn load_sections(elf: &Elf<'_>, file: &Bytes) -> Option<(Sections, Option<SeekableZlib>)> {
    if !has_dwarf(elf) {
        return None;
    }
    let info = seekable_info(elf, file);
    let endian = endian(elf);
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let data = if UNUSED_SECTIONS.contains(&id)
            || (id == gimli::SectionId::DebugInfo && info.is_some())
        {
            None
        } else {
            elf::section_bytes(elf, file, id.name())
        };
        Ok(gimli::EndianReader::new(
            data.unwrap_or_else(Bytes::empty),
            endian,
        ))
    };
    let sections = gimli::DwarfSections::load(load).ok().map(Box::new)?;
    Some((sections, info))
}

/// The named section (decompressed) as a gimli reader; empty when absent or unreadable, as
/// gimli expects of sections a file does not have.
pub(crate) fn section_reader(elf: &Elf<'_>, file: &Bytes, name: &str) -> Reader {
    let data = elf::section_bytes(elf, file, name).unwrap_or_else(Bytes::empty);
    gimli::EndianReader::new(data, endian(elf))
}

fn endian(elf: &Elf<'_>) -> gimli::RunTimeEndian {
    if elf.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

/// `.debug_info` as a [`SeekableZlib`], when it is zlib-compressed and big.
fn seekable_info(elf: &Elf<'_>, file: &Bytes) -> Option<SeekableZlib> {
    let section = elf.section_by_name(".debug_info")?;
    let range = section.compressed_file_range().ok()?;
    let big = (SEEKABLE_INFO..=elf::MAX_DECOMPRESSED_SECTION).contains(&range.uncompressed_size);
    if range.format != object::CompressionFormat::Zlib || !big {
        return None;
    }
    let compressed = file.slice_at(range.offset, range.compressed_size)?;
    Some(SeekableZlib::new(compressed, range.uncompressed_size))
}

/// `sections` with `info` decompressed whole into them, for lookups that need every unit.
fn with_info(mut sections: Sections, info: Option<SeekableZlib>) -> Option<Sections> {
    if let Some(info) = info {
        let endian = sections.debug_abbrev.reader().endian();
        let whole = info.into_whole()?;
        sections.debug_info = gimli::EndianReader::new(Bytes::from_vec(whole), endian).into();
    }
    Some(sections)
}
