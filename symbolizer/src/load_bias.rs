//! Load bias: the difference between where a file's code runs (AVMA) and where the file says
//! it is (SVMA).

use crate::elf::LoadSegment;

/// Mappings start on page boundaries while `PT_LOAD` offsets need not; the kernel maps from the
/// page containing `p_offset`.
const PAGE_SIZE: u64 = 4096;

/// The bias of a file mapped from file offset `map_offset` at address `map_start`:
/// `avma = svma + bias` (wrapping arithmetic, so a "negative" bias works too).
///
/// The segment containing the mapping's first byte decides: `svma = p_vaddr + (off -
/// p_offset)`. An exact containment is preferred over a page-rounded one, and among segments
/// sharing the mapping's page, one whose executability matches the mapping's (`exec`): linkers
/// such as rust-lld start the text segment in the last page of the read-only one, at a vaddr
/// one page further on, so the page alone is ambiguous.
pub(crate) fn load_bias(
    segments: &[LoadSegment],
    map_offset: u64,
    map_start: u64,
    exec: bool,
) -> Option<u64> {
    let contains =
        |s: &&LoadSegment| s.offset <= map_offset && map_offset - s.offset < s.file_size.max(1);
    let contains_page = |s: &&LoadSegment| {
        let page_start = s.offset & !(PAGE_SIZE - 1);
        page_start <= map_offset && map_offset < s.offset.saturating_add(s.file_size.max(1))
    };
    let same_kind = |s: &&LoadSegment| s.exec == exec;
    let segment = segments
        .iter()
        .filter(same_kind)
        .find(contains)
        .or_else(|| segments.iter().filter(same_kind).find(contains_page))
        .or_else(|| segments.iter().find(contains))
        .or_else(|| segments.iter().find(contains_page))?;
    let svma = segment
        .vaddr
        .wrapping_add(map_offset)
        .wrapping_sub(segment.offset);
    Some(map_start.wrapping_sub(svma))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(offset: u64, vaddr: u64, size: u64, exec: bool) -> LoadSegment {
        LoadSegment {
            offset,
            file_size: size,
            vaddr,
            mem_size: size,
            exec,
        }
    }

    #[test]
    fn pie_non_pie_and_unaligned_segments() {
        // /usr/bin/cat (PIE): r-xp mapping at offset 0x2000.
        let pie = [
            segment(0, 0, 0x1a88, false),
            segment(0x2000, 0x2000, 0x4a21, true),
        ];
        assert_eq!(
            load_bias(&pie, 0x2000, 0x5639251f3000, true),
            Some(0x5639251f1000)
        );
        assert_eq!(
            load_bias(&pie, 0, 0x5639251f1000, false),
            Some(0x5639251f1000)
        );
        // Non-PIE executable at its link address.
        let fixed = [
            segment(0, 0x400000, 0x1000, false),
            segment(0x1000, 0x401000, 0x800, true),
        ];
        assert_eq!(load_bias(&fixed, 0x1000, 0x401000, true), Some(0));
        // Data segment whose p_offset is not page aligned (vaddr 0x3d50, offset 0x2d50).
        let data = [segment(0x2d50, 0x3d50, 0x2c0, false)];
        assert_eq!(
            load_bias(&data, 0x2000, 0x7f0000003000, false),
            Some(0x7f0000000000)
        );
        assert_eq!(load_bias(&data, 0x9000, 0x7f0000003000, false), None);
    }

    #[test]
    fn rust_lld_text_segment_sharing_a_page() {
        // rust_target built by rustc 1.95 (rust-lld): the r-x mapping at file offset 0x17000
        // lies in both segments' pages; only the executable one gives the right vaddr.
        let lld = [
            segment(0, 0, 0x17998, false),
            segment(0x179a0, 0x189a0, 0x47010, true),
        ];
        assert_eq!(
            load_bias(&lld, 0x17000, 0x5600_0001_8000, true),
            Some(0x5600_0000_0000)
        );
    }
}
