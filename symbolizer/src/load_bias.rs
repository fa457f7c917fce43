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
/// p_offset)`. An exact containment is preferred over a page-rounded one.
pub(crate) fn load_bias(segments: &[LoadSegment], map_offset: u64, map_start: u64) -> Option<u64> {
    let contains =
        |s: &&LoadSegment| s.offset <= map_offset && map_offset - s.offset < s.file_size.max(1);
    let contains_page = |s: &&LoadSegment| {
        let page_start = s.offset & !(PAGE_SIZE - 1);
        page_start <= map_offset && map_offset < s.offset.saturating_add(s.file_size.max(1))
    };
    let segment = segments
        .iter()
        .find(contains)
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
            load_bias(&pie, 0x2000, 0x5639251f3000),
            Some(0x5639251f1000)
        );
        assert_eq!(load_bias(&pie, 0, 0x5639251f1000), Some(0x5639251f1000));
        // Non-PIE executable at its link address.
        let fixed = [
            segment(0, 0x400000, 0x1000, false),
            segment(0x1000, 0x401000, 0x800, true),
        ];
        assert_eq!(load_bias(&fixed, 0x1000, 0x401000), Some(0));
        // Data segment whose p_offset is not page aligned (vaddr 0x3d50, offset 0x2d50).
        let data = [segment(0x2d50, 0x3d50, 0x2c0, false)];
        assert_eq!(
            load_bias(&data, 0x2000, 0x7f0000003000),
            Some(0x7f0000000000)
        );
        assert_eq!(load_bias(&data, 0x9000, 0x7f0000003000), None);
    }
}
