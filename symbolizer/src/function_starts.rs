//! [`FunctionStarts`]: where functions begin and end, according to the unwind tables.
//!
//! A stripped binary has no symbol for most of its code, but it keeps `.eh_frame` (the unwinder
//! needs it), and every FDE there covers exactly one function. Naming unnamed code after the
//! start of its FDE (`redis-server+0x4c3e0`) gives one profile row per function instead of one
//! per instruction, and an address `addr2line -e FILE` accepts once debug info is found.

use gimli::{
    BaseAddresses, CieOrFde, DebugFrame, EhFrame, EhFrameHdr, EndianSlice, LittleEndian,
    UnwindSection,
};

use crate::bytes::Bytes;
use crate::unwind::UnwindSections;

/// More FDEs than any real file has (rustc's driver library has ~300 000): a bound for a table
/// read from a file we don't control.
const MAX_FUNCTIONS: usize = 4_000_000;

/// Function extents (SVMAs).
#[derive(Debug)]
pub(crate) enum FunctionStarts {
    /// Looked up in `.eh_frame_hdr`'s sorted table, one FDE read per lookup: nothing is
    /// walked or kept (rustc's driver library has 6 MB of `.eh_frame`).
    Indexed(Box<HdrIndex>),
    /// Every FDE, walked once, sorted by start: for files without the table, or with a
    /// `.debug_frame` (which the table does not cover).
    Walked(Vec<(u64, u64)>),
}

/// `.eh_frame_hdr`, `.eh_frame` and the addresses their pointers are relative to.
#[derive(Debug)]
pub(crate) struct HdrIndex {
    hdr: Bytes,
    eh_frame: Bytes,
    bases: BaseAddresses,
}

impl Default for FunctionStarts {
    fn default() -> Self {
        FunctionStarts::Walked(Vec::new())
    }
}

impl FunctionStarts {
    /// The index of `.eh_frame_hdr` where it has a usable table and no `.debug_frame` needs
    /// walking; else every FDE of `.eh_frame` and `.debug_frame`, walked.
    pub(crate) fn read(sections: &UnwindSections) -> Self {
        if sections.debug_frame.is_none() {
            if let Some(index) = HdrIndex::new(sections) {
                return FunctionStarts::Indexed(Box::new(index));
            }
        }
        FunctionStarts::Walked(Self::walk(sections))
    }

    /// Reads every FDE of `.eh_frame` and `.debug_frame`. A malformed entry ends that section's
    /// walk (entries have no resync point); what was read before it is kept.
    fn walk(sections: &UnwindSections) -> Vec<(u64, u64)> {
        let mut extents = Vec::new();
        if let (Some(data), Some(svma)) = (&sections.eh_frame, &sections.eh_frame_svma) {
            let mut bases = BaseAddresses::default().set_eh_frame(svma.start);
            if let Some(text) = &sections.text_svma {
                bases = bases.set_text(text.start);
            }
            if let Some(got) = &sections.got_svma {
                bases = bases.set_got(got.start);
            }
            let mut eh_frame = EhFrame::new(data, LittleEndian);
            eh_frame.set_address_size(8);
            collect(&eh_frame, &bases, &mut extents);
        }
        if let Some(data) = &sections.debug_frame {
            let mut debug_frame = DebugFrame::new(data, LittleEndian);
            debug_frame.set_address_size(8);
            collect(&debug_frame, &BaseAddresses::default(), &mut extents);
        }
        extents.sort_unstable();
        extents.dedup();
        extents
    }

    /// The start of the function containing `svma`. Where FDEs overlap (both sections describe
    /// the same function), the innermost, latest-starting one wins.
    pub(crate) fn containing(&self, svma: u64) -> Option<u64> {
        match self {
            FunctionStarts::Indexed(index) => index.containing(svma),
            FunctionStarts::Walked(extents) => {
                let after = extents.partition_point(|&(start, _)| start <= svma);
                let (start, end) = *extents.get(after.checked_sub(1)?)?;
                (svma < end).then_some(start)
            }
        }
    }
}

impl HdrIndex {
    fn new(sections: &UnwindSections) -> Option<HdrIndex> {
        let (hdr, hdr_svma) = (
            sections.eh_frame_hdr.clone()?,
            sections.eh_frame_hdr_svma.clone()?,
        );
        let (eh_frame, eh_frame_svma) =
            (sections.eh_frame.clone()?, sections.eh_frame_svma.clone()?);
        let mut bases = BaseAddresses::default()
            .set_eh_frame_hdr(hdr_svma.start)
            .set_eh_frame(eh_frame_svma.start);
        if let Some(text) = &sections.text_svma {
            bases = bases.set_text(text.start);
        }
        if let Some(got) = &sections.got_svma {
            bases = bases.set_got(got.start);
        }
        if !table_fits(&hdr, hdr_svma.start, eh_frame_svma.start) {
            return None;
        }
        Some(HdrIndex {
            hdr,
            eh_frame,
            bases,
        })
    }

    fn containing(&self, svma: u64) -> Option<u64> {
        let parsed = EhFrameHdr::new(&self.hdr, LittleEndian)
            .parse(&self.bases, 8)
            .ok()?;
        let mut eh_frame = EhFrame::new(&self.eh_frame, LittleEndian);
        eh_frame.set_address_size(8);
        let fde = parsed
            .table()?
            .fde_for_address(&eh_frame, &self.bases, svma, EhFrame::cie_from_offset)
            .ok()?;
        Some(fde.initial_address())
    }
}

/// Whether `.eh_frame_hdr` (at `hdr_svma`) is the usual one, and consistent: version 1,
/// `.eh_frame` pointer pc-relative 4 bytes and pointing at `.eh_frame`, a 4-byte FDE count and a
/// table of 4-byte data-relative pairs that fits in the section. Anything else is walked
/// instead: the binary search would read whatever the header says the table holds.
fn table_fits(hdr: &[u8], hdr_svma: u64, eh_frame_svma: u64) -> bool {
    const PCREL_SDATA4: u8 = 0x1b;
    const UDATA4: u8 = 0x03;
    const DATAREL_SDATA4: u8 = 0x3b;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(hdr.get(at..at + 4)?.try_into().ok()?))
    };
    let (Some(&[version, pointer, count, table]), Some(offset), Some(fdes)) = (
        hdr.get(..4).and_then(|h| <&[u8; 4]>::try_from(h).ok()),
        word(4),
        word(8),
    ) else {
        return false;
    };
    let points_at_eh_frame = hdr_svma
        .checked_add(4)
        .map(|at| at.wrapping_add_signed(i64::from(offset as i32)))
        == Some(eh_frame_svma);
    let table_len = u64::from(fdes)
        .checked_mul(8)
        .and_then(|len| len.checked_add(12));
    version == 1
        && (pointer, count, table) == (PCREL_SDATA4, UDATA4, DATAREL_SDATA4)
        && points_at_eh_frame
        && fdes > 0
        && table_len.is_some_and(|len| len <= hdr.len() as u64)
}

/// Appends the extent of every FDE of `section`, up to [`MAX_FUNCTIONS`] in all.
fn collect<'a, S>(section: &S, bases: &BaseAddresses, out: &mut Vec<(u64, u64)>)
where
    S: UnwindSection<EndianSlice<'a, LittleEndian>>,
{
    let mut entries = section.entries(bases);
    while out.len() < MAX_FUNCTIONS {
        let Ok(Some(entry)) = entries.next() else {
            return;
        };
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let Ok(fde) = partial.parse(S::cie_from_offset) else {
            continue;
        };
        let start = fde.initial_address();
        if let Some(end) = start.checked_add(fde.len()).filter(|&end| end > start) {
            out.push((start, end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_info::ObjectInfo;

    fn this_binary() -> ObjectInfo {
        let data = std::fs::read("/proc/self/exe").expect("read own binary");
        ObjectInfo::from_bytes("self", Bytes::from_vec(data)).expect("parse own binary")
    }

    #[test]
    fn every_fde_of_a_real_binary_is_found() {
        let object = this_binary();
        let sections = object.unwind_sections();
        let walked = FunctionStarts::Walked(FunctionStarts::walk(&sections));
        let FunctionStarts::Walked(extents) = &walked else {
            unreachable!()
        };
        assert!(extents.len() > 1000, "only {} FDEs", extents.len());
        let starts = FunctionStarts::read(&sections);
        assert!(
            matches!(starts, FunctionStarts::Indexed(_)),
            "this binary has .eh_frame_hdr"
        );
        // The index and the walk agree, on every FDE's start, middle and end.
        for &(start, end) in extents.iter().step_by(37) {
            for svma in [start, start + (end - start) / 2, end - 1] {
                assert_eq!(
                    starts.containing(svma),
                    walked.containing(svma),
                    "at {svma:#x} in {start:#x}..{end:#x}"
                );
            }
        }
        // This function's own code is covered, and its start is at or below it.
        let here = every_fde_of_a_real_binary_is_found as *const () as u64;
        let bias = load_bias_of_self(&object);
        let svma = here.wrapping_sub(bias);
        let start = starts.containing(svma).expect("this function has an FDE");
        assert!(
            start <= svma && svma - start < 4096,
            "{start:#x} vs {svma:#x}"
        );
        assert_eq!(starts.containing(start), Some(start));
    }

    #[test]
    fn a_table_bigger_than_its_section_or_pointing_elsewhere_is_walked_instead() {
        let sections = this_binary().unwind_sections();
        let hdr = sections.eh_frame_hdr.clone().expect(".eh_frame_hdr");
        let with_hdr = |bytes: Vec<u8>| UnwindSections {
            eh_frame_hdr: Some(Bytes::from_vec(bytes)),
            ..sections.clone()
        };
        let mut too_many = hdr.to_vec();
        let count = u32::from_le_bytes(too_many[8..12].try_into().unwrap());
        too_many[8..12].copy_from_slice(&(count + 1).to_le_bytes());
        let mut elsewhere = hdr.to_vec();
        let offset = i32::from_le_bytes(elsewhere[4..8].try_into().unwrap());
        elsewhere[4..8].copy_from_slice(&(offset + 16).to_le_bytes());
        for broken in [too_many, elsewhere] {
            assert!(matches!(
                FunctionStarts::read(&with_hdr(broken)),
                FunctionStarts::Walked(_)
            ));
        }
        assert!(matches!(
            FunctionStarts::read(&with_hdr(hdr.to_vec())),
            FunctionStarts::Indexed(_)
        ));
    }

    #[test]
    fn addresses_outside_every_fde_have_no_start() {
        let starts =
            FunctionStarts::Walked(vec![(0x1000, 0x1010), (0x1010, 0x1100), (0x2000, 0x2004)]);
        assert_eq!(starts.containing(0xfff), None);
        assert_eq!(starts.containing(0x100f), Some(0x1000));
        assert_eq!(starts.containing(0x1010), Some(0x1010));
        assert_eq!(starts.containing(0x1100), None, "end is exclusive");
        assert_eq!(starts.containing(0x2003), Some(0x2000));
        assert_eq!(starts.containing(u64::MAX), None);
    }

    #[test]
    fn garbage_sections_give_no_starts_and_no_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 3, 16, 64, 4096] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let sections = UnwindSections {
                eh_frame_svma: Some(0x1000..0x1000 + len as u64),
                eh_frame: Some(Bytes::from_vec(data.clone())),
                eh_frame_hdr_svma: Some(0x9000..0x9000 + len as u64),
                eh_frame_hdr: Some(Bytes::from_vec(data.clone())),
                debug_frame: Some(Bytes::from_vec(data)),
                ..UnwindSections::default()
            };
            let starts = FunctionStarts::read(&sections);
            let _ = starts.containing(0x1234);
            let without_debug_frame = UnwindSections {
                debug_frame: None,
                ..sections
            };
            let starts = FunctionStarts::read(&without_debug_frame);
            let _ = starts.containing(0x1234);
        }
    }

    /// Where this test binary is loaded: its text mapping's start minus the file offset.
    fn load_bias_of_self(object: &ObjectInfo) -> u64 {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let exe = exe.to_string_lossy();
        maps.lines()
            .filter(|line| line.ends_with(exe.as_ref()) && line.contains(" r-xp "))
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let start = u64::from_str_radix(fields.next()?.split('-').next()?, 16).ok()?;
                let offset = u64::from_str_radix(fields.nth(1)?, 16).ok()?;
                object.load_bias(offset, start, true)
            })
            .expect("text mapping of self")
    }
}
