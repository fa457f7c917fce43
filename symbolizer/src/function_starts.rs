//! [`FunctionStarts`]: where functions begin and end, according to the unwind tables.
//!
//! A stripped binary has no symbol for most of its code, but it keeps `.eh_frame` (the unwinder
//! needs it), and every FDE there covers exactly one function. Naming unnamed code after the
//! start of its FDE (`redis-server+0x4c3e0`) gives one profile row per function instead of one
//! per instruction, and an address `addr2line -e FILE` accepts once debug info is found.

use gimli::{
    BaseAddresses, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, UnwindSection,
};

use crate::unwind::UnwindSections;

/// More FDEs than any real file has (rustc's driver library has ~300 000): a bound for a table
/// read from a file we don't control.
const MAX_FUNCTIONS: usize = 4_000_000;

/// Function extents (SVMAs), sorted by start.
#[derive(Debug, Default)]
pub(crate) struct FunctionStarts {
    extents: Vec<(u64, u64)>,
}

impl FunctionStarts {
    /// Reads every FDE of `.eh_frame` and `.debug_frame`. A malformed entry ends that section's
    /// walk (entries have no resync point); what was read before it is kept.
    pub(crate) fn read(sections: &UnwindSections) -> Self {
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
        FunctionStarts { extents }
    }

    /// The start of the function containing `svma`. Where FDEs overlap (both sections describe
    /// the same function), the innermost, latest-starting one wins.
    pub(crate) fn containing(&self, svma: u64) -> Option<u64> {
        let after = self.extents.partition_point(|&(start, _)| start <= svma);
        let (start, end) = *self.extents.get(after.checked_sub(1)?)?;
        (svma < end).then_some(start)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.extents.len()
    }
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
    use crate::bytes::Bytes;
    use crate::object_info::ObjectInfo;

    fn this_binary() -> ObjectInfo {
        let data = std::fs::read("/proc/self/exe").expect("read own binary");
        ObjectInfo::from_bytes("self", Bytes::from_vec(data)).expect("parse own binary")
    }

    #[test]
    fn every_fde_of_a_real_binary_is_found() {
        let object = this_binary();
        let starts = FunctionStarts::read(&object.unwind_sections());
        assert!(starts.len() > 1000, "only {} FDEs", starts.len());
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
    fn addresses_outside_every_fde_have_no_start() {
        let starts = FunctionStarts {
            extents: vec![(0x1000, 0x1010), (0x1010, 0x1100), (0x2000, 0x2004)],
        };
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
                debug_frame: Some(Bytes::from_vec(data)),
                ..UnwindSections::default()
            };
            let starts = FunctionStarts::read(&sections);
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
