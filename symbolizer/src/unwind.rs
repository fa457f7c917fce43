//! [`UnwindSections`]: what framehop needs to unwind through one ELF object.

use std::ops::Range;

use object::read::elf::{ElfSection64, SectionHeader};
use object::{Endianness, Object, ObjectSection};

use crate::bytes::Bytes;
use crate::elf::{self, Elf, LoadSegment};

/// Section addresses and data for framehop's `ExplicitModuleSectionInfo`. Addresses are the
/// file's own virtual addresses (SVMAs).
#[derive(Debug, Clone, Default)]
pub struct UnwindSections {
    /// Always 0 for ELF.
    pub base_svma: u64,
    pub text_svma: Option<Range<u64>>,
    pub text: Option<Bytes>,
    pub got_svma: Option<Range<u64>>,
    pub eh_frame_svma: Option<Range<u64>>,
    pub eh_frame: Option<Bytes>,
    pub eh_frame_hdr_svma: Option<Range<u64>>,
    pub eh_frame_hdr: Option<Bytes>,
    /// Decompressed if `SHF_COMPRESSED`; taken from the separate debug file if the binary itself
    /// has none.
    pub debug_frame: Option<Bytes>,
    /// Code that only `debug_frame` describes although the file has `eh_frame` too: a Go
    /// program linked with C code (cgo), whose Go part (`runtime.text..runtime.etext`) has
    /// Go's `.debug_frame` and its C part gcc's `.eh_frame`. An unwinder that reads one of
    /// the two for the whole file must read `debug_frame` for these SVMAs.
    pub debug_frame_only: Option<Range<u64>>,
}

impl UnwindSections {
    /// Reads the unwind sections of `elf` (bytes `file`), falling back to program headers for
    /// files without section headers.
    pub(crate) fn read(elf: &Elf<'_>, file: &Bytes, segments: &[LoadSegment]) -> Self {
        let mut sections = UnwindSections {
            debug_frame: elf::section_bytes(elf, file, ".debug_frame"),
            ..UnwindSections::default()
        };
        if let Some((svma, data)) = mapped_section(elf, file, ".text") {
            sections.text_svma = Some(svma);
            sections.text = Some(data);
        }
        sections.got_svma = elf
            .section_by_name(".got")
            .and_then(|s| elf::section_svma(&s));
        if let Some((svma, data)) = mapped_section(elf, file, ".eh_frame") {
            sections.eh_frame_svma = Some(svma);
            sections.eh_frame = Some(data);
        }
        if let Some((svma, data)) = mapped_section(elf, file, ".eh_frame_hdr") {
            sections.eh_frame_hdr_svma = Some(svma);
            sections.eh_frame_hdr = Some(data);
        }
        if sections.text.is_none() {
            sections.fill_from_segments(elf, file, segments);
        }
        sections
    }

    /// Stripped-to-the-bone files (and some vdso images) lack section headers: take the code
    /// from the executable `PT_LOAD` and `.eh_frame_hdr` from `PT_GNU_EH_FRAME`.
    fn fill_from_segments(&mut self, elf: &Elf<'_>, file: &Bytes, segments: &[LoadSegment]) {
        if let Some(code) = segments.iter().find(|s| s.exec) {
            if let (Some(end), Some(data)) = (
                code.vaddr.checked_add(code.file_size),
                file.slice_at(code.offset, code.file_size),
            ) {
                self.text_svma = Some(code.vaddr..end);
                self.text = Some(data);
            }
        }
        if self.eh_frame_hdr.is_none() {
            if let Some((vaddr, offset, size)) = elf::eh_frame_hdr_segment(elf) {
                if let (Some(end), Some(data)) =
                    (vaddr.checked_add(size), file.slice_at(offset, size))
                {
                    self.eh_frame_hdr_svma = Some(vaddr..end);
                    self.eh_frame_hdr = Some(data);
                }
            }
        }
    }
}

/// An allocated section's address range and (uncompressed, file-backed) data.
fn mapped_section(elf: &Elf<'_>, file: &Bytes, name: &str) -> Option<(Range<u64>, Bytes)> {
    let section: ElfSection64<'_, '_, Endianness, &[u8]> = elf.section_by_name(name)?;
    if section.elf_section_header().sh_type(elf.endian()) == object::elf::SHT_NOBITS {
        return None;
    }
    let svma = elf::section_svma(&section)?;
    let (offset, size) = section.file_range()?;
    Some((svma, file.slice_at(offset, size)?))
}
