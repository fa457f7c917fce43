//! Thin helpers over `object`'s ELF reader: parsing, bounded section data, notes, segments.

use object::elf;
use object::read::elf::{ElfFile64, ProgramHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection};

use crate::bytes::Bytes;
use crate::error::Error;

pub(crate) type Elf<'data> = ElfFile64<'data, Endianness, &'data [u8]>;
pub(crate) type ElfSection<'data, 'file> =
    object::read::elf::ElfSection64<'data, 'file, Endianness, &'data [u8]>;

/// Decompressed debug sections larger than this are refused (and the section treated as
/// absent): the size comes from an untrusted header. Real DWARF sections of the largest
/// binaries (browsers) stay well below.
pub(crate) const MAX_DECOMPRESSED_SECTION: u64 = 1 << 30;

/// Parses `data` as a 64-bit ELF file.
pub(crate) fn parse<'data>(name: &str, data: &'data [u8]) -> Result<Elf<'data>, Error> {
    ElfFile64::parse(data).map_err(|err| Error::parse(name, err.to_string()))
}

/// A `PT_LOAD` program header: how a part of the file is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    pub offset: u64,
    pub file_size: u64,
    pub vaddr: u64,
    pub mem_size: u64,
    pub exec: bool,
}

pub(crate) fn load_segments(elf: &Elf<'_>) -> Vec<LoadSegment> {
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| LoadSegment {
            offset: ph.p_offset(endian),
            file_size: ph.p_filesz(endian),
            vaddr: ph.p_vaddr(endian),
            mem_size: ph.p_memsz(endian),
            exec: ph.p_flags(endian) & elf::PF_X != 0,
        })
        .collect()
}

/// The `PT_GNU_EH_FRAME` segment (`.eh_frame_hdr`) as (vaddr, file offset, size).
pub(crate) fn eh_frame_hdr_segment(elf: &Elf<'_>) -> Option<(u64, u64, u64)> {
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == elf::PT_GNU_EH_FRAME)
        .map(|ph| (ph.p_vaddr(endian), ph.p_offset(endian), ph.p_filesz(endian)))
}

/// The `PT_TLS` segment, if any: the executable's thread-local block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlsSegment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub align: u64,
}

pub(crate) fn tls_segment(elf: &Elf<'_>) -> Option<TlsSegment> {
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == elf::PT_TLS)
        .map(|ph| TlsSegment {
            vaddr: ph.p_vaddr(endian),
            mem_size: ph.p_memsz(endian),
            align: ph.p_align(endian),
        })
}

/// Where an executable's thread-local symbol `name` lies relative to the thread pointer (FS
/// base on x86-64), in bytes: negative, as TLS variant II puts the executable's block just
/// below it. None without the symbol in `.symtab` or with a malformed segment.
pub(crate) fn executable_tls_offset(elf: &Elf<'_>, tls: TlsSegment, name: &str) -> Option<i64> {
    use object::ObjectSymbol;
    let symbol = elf
        .symbols()
        .find(|symbol| symbol.kind() == object::SymbolKind::Tls && symbol.name() == Ok(name))?;
    let block = tls_block_offset(tls.vaddr, tls.mem_size, tls.align)?;
    i64::try_from(symbol.address())
        .ok()?
        .checked_sub(i64::try_from(block).ok()?)
}

/// The distance from the thread pointer down to the start of the executable's TLS block of
/// `size` bytes aligned to `align` at `vaddr`, as glibc's `_dl_determine_tlsoffset` lays out
/// the first module: `roundup(size - firstbyte, align) + firstbyte`, with `firstbyte = -vaddr
/// & (align - 1)`. None for a malformed header.
pub(crate) fn tls_block_offset(vaddr: u64, size: u64, align: u64) -> Option<u64> {
    // Larger is no real block: a malformed header.
    const MAX_SIZE: u64 = 1 << 30;
    let align = align.max(1);
    if !align.is_power_of_two() || size > MAX_SIZE || align > MAX_SIZE {
        return None;
    }
    let firstbyte = vaddr.wrapping_neg() & (align - 1);
    // In size_t arithmetic, as glibc: a block smaller than its first byte's offset wraps.
    let rounded = size.wrapping_sub(firstbyte).wrapping_add(align - 1) & !(align - 1);
    Some(rounded.wrapping_add(firstbyte))
}

/// The address range a section occupies at run time, if it has one.
pub(crate) fn section_svma(section: &ElfSection<'_, '_>) -> Option<std::ops::Range<u64>> {
    let start = section.address();
    let end = start.checked_add(section.size())?;
    (start != 0 && start < end).then_some(start..end)
}

/// The contents of the named section: a zero-copy slice of `file` when stored plainly, a
/// decompressed copy when `SHF_COMPRESSED` or `.zdebug_*` (bounded by
/// [`MAX_DECOMPRESSED_SECTION`]). `None` when absent, empty, `SHT_NOBITS` or malformed.
pub(crate) fn section_bytes(elf: &Elf<'_>, file: &Bytes, name: &str) -> Option<Bytes> {
    section_data(file, &elf.section_by_name(name)?)
}

pub(crate) fn section_data(file: &Bytes, section: &ElfSection<'_, '_>) -> Option<Bytes> {
    if section
        .elf_section_header()
        .sh_type(section.elf_file().endian())
        == elf::SHT_NOBITS
    {
        return None;
    }
    let range = section.compressed_file_range().ok()?;
    let bytes = if range.format == object::CompressionFormat::None {
        file.slice_at(range.offset, range.compressed_size)?
    } else {
        if range.uncompressed_size > MAX_DECOMPRESSED_SECTION {
            tracing::debug!(
                size = range.uncompressed_size,
                "compressed section too large, ignored"
            );
            return None;
        }
        let data = range.data(&**file).ok()?.decompress().ok()?;
        Bytes::from_vec(data.into_owned())
    };
    (!bytes.is_empty()).then_some(bytes)
}

/// Whether the named section exists with file contents (not `SHT_NOBITS`, not empty).
pub(crate) fn has_section_data(elf: &Elf<'_>, name: &str) -> bool {
    elf.section_by_name(name).is_some_and(|section| {
        section.elf_section_header().sh_type(elf.endian()) != elf::SHT_NOBITS && section.size() != 0
    })
}

/// The Go toolchain's build id, from the `.note.go.buildid` note (name "Go", type 4).
pub(crate) fn go_build_id(elf: &Elf<'_>) -> Option<String> {
    const NT_GO_BUILD_ID: u32 = 4;
    let endian = elf.endian();
    let section = elf.section_by_name(".note.go.buildid")?;
    let mut notes = section
        .elf_section_header()
        .notes(endian, elf.data())
        .ok()??;
    // A note section holds a handful of notes; bound the walk regardless.
    for _ in 0..16 {
        let note = notes.next().ok()??;
        if note.name() == b"Go" && note.n_type(endian) == NT_GO_BUILD_ID {
            let id = std::str::from_utf8(note.desc()).ok()?;
            return Some(id.trim_end_matches('\0').to_owned());
        }
    }
    None
}

/// Marks of the Go toolchain: its runtime tables and build notes.
pub(crate) fn is_go(elf: &Elf<'_>) -> bool {
    [".go.buildinfo", ".gopclntab", ".note.go.buildid"]
        .iter()
        .any(|name| elf.section_by_name(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_tls_block_ends_at_the_thread_pointer() {
        // One 8-byte word: just below the thread pointer.
        assert_eq!(tls_block_offset(0x514df0, 8, 8), Some(8));
        // Rounded up to the alignment.
        assert_eq!(tls_block_offset(0x515dd0, 0x14, 16), Some(0x20));
        // A block that starts off its alignment keeps that offset (glibc's firstbyte).
        assert_eq!(tls_block_offset(0x1008, 0x10, 16), Some(0x18));
        assert_eq!(tls_block_offset(0x1000, 0, 0), Some(0));
        // Smaller than its first byte's offset: wraps as glibc's size_t arithmetic does.
        assert_eq!(tls_block_offset(0x1008, 4, 16), Some(8));
        // Malformed: alignment not a power of two, sizes no block has.
        assert_eq!(tls_block_offset(0x1000, 8, 12), None);
        assert_eq!(tls_block_offset(0, u64::MAX, 16), None);
        assert_eq!(tls_block_offset(0, 8, 1 << 40), None);
    }
}
