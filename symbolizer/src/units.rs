//! Per-unit DWARF lookups: an index of each compilation unit's address ranges, and an
//! addr2line context over a single unit, built when an address first falls in that unit.
//!
//! A context over one unit parses that unit's abbreviations, line program and functions only,
//! instead of every unit's: naming a handful of libc frames costs a few units, not the whole
//! debug file. This is exact only while units stand alone, which [`UnitContexts::new`] checks.

use std::collections::{HashMap, HashSet};

use gimli::{Endianity as _, Reader as _, Section as _};

use crate::bytes::Bytes;
use crate::dwarf::Reader;
use crate::seekable_zlib::SeekableZlib;

/// The DWARF sections of one file, as loaded (and decompressed) once.
pub(crate) type Sections = Box<gimli::DwarfSections<Reader>>;

/// Unit contexts kept per file; past this the set starts over. A profile touches a few units
/// of each library, a big C++ program a few hundred of its own.
const MAX_UNIT_CONTEXTS: usize = 256;
/// Address ranges indexed per file, whatever a corrupt file declares.
const MAX_RANGES: usize = 1 << 22;
/// Ranges walked back from an address to find those that contain it (ranges of distinct
/// units rarely overlap).
const MAX_BACKTRACK: usize = 32;
/// Units tried for one address.
const MAX_CANDIDATES: usize = 4;
/// Abbreviations read from one table before giving up on it.
const MAX_ABBREVIATIONS: usize = 1 << 20;

/// One address range of a unit.
#[derive(Debug, Clone, Copy)]
struct UnitRange {
    begin: u64,
    end: u64,
    unit: u32,
}

/// Where a unit lies in `.debug_info`: its header's offset and its length, header included.
#[derive(Debug, Clone, Copy)]
struct UnitSpan {
    offset: usize,
    len: usize,
}

/// The per-unit index and the contexts built so far.
pub(crate) struct UnitContexts {
    sections: Sections,
    /// `.debug_info` when it is kept compressed (then `sections` has it empty): each unit is
    /// decompressed on its own when first needed.
    info: Option<SeekableZlib>,
    /// Sorted by `begin`.
    ranges: Vec<UnitRange>,
    units: Vec<UnitSpan>,
    /// `None` for a unit addr2line could not read; with when it was last used.
    contexts: HashMap<u32, (Option<addr2line::Context<Reader>>, u64)>,
    clock: u64,
}

impl UnitContexts {
    /// Indexes the units of `sections` (and of `info`, `.debug_info` kept compressed, when
    /// given), or gives them back when a unit refers into another one (`DW_FORM_ref_addr`,
    /// partial or imported units): a context over one unit could not follow that reference,
    /// so the caller needs one over all of them.
    pub fn new(
        sections: Sections,
        mut info: Option<SeekableZlib>,
    ) -> Result<UnitContexts, (Sections, Option<SeekableZlib>)> {
        let indexed = match info.as_mut() {
            None => index(&sections.borrow(Clone::clone)),
            Some(info) => index_compressed(&sections, info),
        };
        let Some((units, mut ranges)) = indexed else {
            return Err((sections, info));
        };
        ranges.sort_unstable_by_key(|r| (r.begin, r.end));
        Ok(UnitContexts {
            sections,
            info,
            ranges,
            units,
            contexts: HashMap::new(),
            clock: 0,
        })
    }

    /// The units whose ranges contain `svma`, best candidates (innermost range) first.
    pub fn covering(&self, svma: u64) -> Vec<u32> {
        let after = self.ranges.partition_point(|r| r.begin <= svma);
        let mut units: Vec<u32> = Vec::new();
        let candidates = self.ranges.get(..after).unwrap_or_default();
        for range in candidates.iter().rev().take(MAX_BACKTRACK) {
            if svma < range.end && !units.contains(&range.unit) {
                units.push(range.unit);
                if units.len() >= MAX_CANDIDATES {
                    break;
                }
            }
        }
        units
    }

    /// The addr2line context over unit `unit` alone, built on first use. When
    /// [`MAX_UNIT_CONTEXTS`] are kept, the least recently used quarter is dropped (a unit
    /// rebuilt costs its parsing, and a compressed one its decompression).
    pub fn context(&mut self, unit: u32) -> Option<&addr2line::Context<Reader>> {
        if !self.contexts.contains_key(&unit) && self.contexts.len() >= MAX_UNIT_CONTEXTS {
            let mut ages: Vec<u64> = self.contexts.values().map(|(_, used)| *used).collect();
            let (_, &mut threshold, _) = ages.select_nth_unstable(MAX_UNIT_CONTEXTS / 4);
            self.contexts.retain(|_, (_, used)| *used > threshold);
        }
        self.clock += 1;
        let now = self.clock;
        let span = *self.units.get(usize::try_from(unit).ok()?)?;
        let (sections, info) = (&self.sections, self.info.as_ref());
        let entry = self
            .contexts
            .entry(unit)
            .or_insert_with(|| (unit_context(sections, info, span), now));
        entry.1 = now;
        entry.0.as_ref()
    }
}

/// A context whose `.debug_info` is the one unit: every other section is whole, so the
/// unit's offsets into them (abbreviations, lines, strings, ranges) stay right, and its
/// references inside itself are relative to its own start.
fn unit_context(
    sections: &Sections,
    info: Option<&SeekableZlib>,
    span: UnitSpan,
) -> Option<addr2line::Context<Reader>> {
    let unit = match info {
        None => {
            let mut unit = sections.debug_info.reader().clone();
            unit.skip(span.offset).ok()?;
            unit.truncate(span.len).ok()?;
            unit
        }
        Some(info) => {
            let bytes = info.read(u64::try_from(span.offset).ok()?, span.len)?;
            gimli::EndianReader::new(Bytes::from_vec(bytes), endian(sections))
        }
    };
    let mut dwarf = one_unit(sections, unit);
    // Its entries name units by their offset in the whole section: none would match.
    dwarf.debug_aranges = gimli::EndianReader::new(Bytes::empty(), endian(sections)).into();
    addr2line::Context::from_dwarf(dwarf)
        .map_err(|err| tracing::debug!(%err, "unusable DWARF unit"))
        .ok()
}

/// The sections, with `unit` (one unit's bytes) as `.debug_info`.
fn one_unit(sections: &Sections, unit: Reader) -> gimli::Dwarf<Reader> {
    let mut dwarf = sections.borrow(Clone::clone);
    dwarf.debug_info = unit.into();
    dwarf
}

fn endian(sections: &Sections) -> gimli::RunTimeEndian {
    sections.debug_abbrev.reader().endian()
}

type Index = (Vec<UnitSpan>, Vec<UnitRange>);

/// Builds the index one unit at a time.
#[derive(Default)]
struct Indexer {
    units: Vec<UnitSpan>,
    ranges: Vec<UnitRange>,
    standalone_tables: HashSet<usize>,
}

impl Indexer {
    /// Adds the unit of `header`, which lies at `offset` in `.debug_info` (`dwarf` reads it).
    /// Some(false) when the index is full, None when units refer to each other. Units that
    /// cannot be read are left out, as addr2line does.
    fn add(
        &mut self,
        dwarf: &gimli::Dwarf<Reader>,
        header: gimli::UnitHeader<Reader>,
        offset: usize,
    ) -> Option<bool> {
        match header.type_() {
            gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } => return Some(true),
            gimli::UnitType::Partial => return None,
            _ => {}
        }
        let table = header.debug_abbrev_offset();
        if !self.standalone_tables.contains(&table.0) {
            if !abbreviations_standalone(dwarf, table.0) {
                return None;
            }
            self.standalone_tables.insert(table.0);
        }
        let span = UnitSpan {
            offset,
            len: header.length_including_self(),
        };
        let Ok(unit) = dwarf.unit(header) else {
            return Some(true);
        };
        let Ok(id) = u32::try_from(self.units.len()) else {
            return Some(false);
        };
        self.units.push(span);
        let before = self.ranges.len();
        unit_ranges(dwarf, &unit, id, &mut self.ranges);
        if self.ranges.len() == before {
            line_ranges(&unit, id, &mut self.ranges);
        }
        if self.ranges.len() >= MAX_RANGES {
            tracing::debug!("DWARF unit index truncated at {MAX_RANGES} ranges");
            return Some(false);
        }
        Some(true)
    }
}

/// Every compilation unit's span and address ranges; None when units refer to each other.
fn index(dwarf: &gimli::Dwarf<Reader>) -> Option<Index> {
    let mut indexer = Indexer::default();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Some(offset) = header.debug_info_offset() else {
            continue;
        };
        if !indexer.add(dwarf, header, offset.0)? {
            break;
        }
    }
    Some((indexer.units, indexer.ranges))
}

/// [`index`] over a `.debug_info` kept compressed: decompressed once, a unit at a time, each
/// unit dropped once indexed. A corrupt stream keeps the units read before the damage.
fn index_compressed(sections: &Sections, info: &mut SeekableZlib) -> Option<Index> {
    let endian = endian(sections);
    let size = info.size();
    let mut indexer = Indexer::default();
    // Decompressed bytes not yet indexed; units are cut from `pending[used..]`, and what was
    // used is dropped once per piece, not once per unit.
    let mut pending: Vec<u8> = Vec::new();
    let mut offset = 0usize;
    let mut standalone = true;
    info.scan(|piece| {
        pending.extend_from_slice(piece);
        let mut used = 0usize;
        let go_on = loop {
            let Some(len) = unit_length(&pending[used..], endian) else {
                break true;
            };
            if len == 0 || len as u64 > size {
                break false;
            }
            let Some(unit) = pending.get(used..used + len) else {
                break true;
            };
            let reader = gimli::EndianReader::new(Bytes::from_vec(unit.to_vec()), endian);
            used += len;
            let dwarf = one_unit(sections, reader.clone());
            let Ok(Some(header)) = gimli::DebugInfo::from(reader).units().next() else {
                break false;
            };
            match indexer.add(&dwarf, header, offset) {
                None => {
                    standalone = false;
                    break false;
                }
                Some(false) => break false,
                Some(true) => offset += len,
            }
        };
        pending.drain(..used);
        go_on
    });
    standalone.then_some((indexer.units, indexer.ranges))
}

/// The length of the unit at the start of `bytes`, its length field included, once that field
/// is complete (4 bytes, or 12 for 64-bit DWARF). Reserved lengths count as 0, which no unit
/// has: the caller stops.
fn unit_length(bytes: &[u8], endian: gimli::RunTimeEndian) -> Option<usize> {
    let short = endian.read_u32(bytes.get(..4)?);
    let len = match short {
        0xffff_ffff => endian
            .read_u64(bytes.get(4..12)?)
            .checked_add(12)
            .and_then(|l| usize::try_from(l).ok()),
        0xffff_fff0.. => Some(0),
        _ => usize::try_from(short).ok().map(|l| l + 4),
    };
    Some(len.unwrap_or(0))
}

/// The unit's own ranges (`DW_AT_ranges`, `DW_AT_low_pc`/`DW_AT_high_pc`).
fn unit_ranges(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    id: u32,
    out: &mut Vec<UnitRange>,
) {
    let Ok(mut iter) = dwarf.unit_ranges(unit) else {
        return;
    };
    while out.len() < MAX_RANGES {
        match iter.next() {
            Ok(Some(range)) if range.begin < range.end => out.push(UnitRange {
                begin: range.begin,
                end: range.end,
                unit: id,
            }),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

/// For a unit that declares no ranges: those of its line program's sequences (as addr2line
/// does).
fn line_ranges(unit: &gimli::Unit<Reader>, id: u32, out: &mut Vec<UnitRange>) {
    let Some(program) = unit.line_program.clone() else {
        return;
    };
    let Ok((_, sequences)) = program.sequences() else {
        return;
    };
    let room = MAX_RANGES.saturating_sub(out.len());
    out.extend(
        sequences
            .iter()
            .filter(|s| s.start < s.end)
            .take(room)
            .map(|s| UnitRange {
                begin: s.start,
                end: s.end,
                unit: id,
            }),
    );
}

/// Whether the abbreviation table at `offset` describes entries that stay inside their unit:
/// no attribute of a form that points into another unit or file (or whose form is only known
/// per entry), no partial or imported unit. False when the table cannot be read.
fn abbreviations_standalone(dwarf: &gimli::Dwarf<Reader>, offset: usize) -> bool {
    let mut table = dwarf.debug_abbrev.reader().clone();
    if table.skip(offset).is_err() {
        return false;
    }
    let mut read = || -> gimli::Result<bool> {
        for _ in 0..MAX_ABBREVIATIONS {
            if table.read_uleb128()? == 0 {
                return Ok(true);
            }
            let tag = gimli::DwTag(u16::try_from(table.read_uleb128()?).unwrap_or(u16::MAX));
            if tag == gimli::DW_TAG_partial_unit || tag == gimli::DW_TAG_imported_unit {
                return Ok(false);
            }
            table.read_u8()?;
            for _ in 0..MAX_ABBREVIATIONS {
                let name = table.read_uleb128()?;
                let form = gimli::DwForm(u16::try_from(table.read_uleb128()?).unwrap_or(u16::MAX));
                if name == 0 && form.0 == 0 {
                    break;
                }
                if form == gimli::DW_FORM_implicit_const {
                    table.read_sleb128()?;
                }
                if crosses_units(form) {
                    return Ok(false);
                }
            }
        }
        Ok(false)
    };
    read().unwrap_or(false)
}

fn crosses_units(form: gimli::DwForm) -> bool {
    [
        gimli::DW_FORM_ref_addr,
        gimli::DW_FORM_indirect,
        gimli::DW_FORM_GNU_ref_alt,
        gimli::DW_FORM_ref_sup4,
        gimli::DW_FORM_ref_sup8,
        gimli::DW_FORM_ref_sig8,
    ]
    .contains(&form)
}
