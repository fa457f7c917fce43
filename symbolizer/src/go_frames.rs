//! A `.debug_frame` made from `.gopclntab`, for Go binaries linked without DWARF.
//!
//! The Go linker writes `.debug_frame` from each function's `pcsp` table (how far SP is below
//! its value at entry, pc by pc), and `-ldflags=-w` drops it with the rest of the DWARF. The
//! table stays in `.gopclntab`, which Go's own traceback reads. Without it, an unwinder falls
//! back to frame pointers, which Go's assembly does not keep (`crypto/sha256.block` uses BP
//! as a general register): stacks end there. So the same CFI is made from the tables: one CIE
//! (CFA = RSP + 8, return address at CFA - 8) and per function an FDE that sets the CFA offset
//! at each change of SP. Go describes no other register either.

use std::ops::Range;

use crate::gopclntab::{self, GoFunction};

/// The section made is refused beyond this size (a real one of kubelet's ~100 000 functions
/// is a few MiB): the tables come from the file.
const MAX_BYTES: usize = 128 << 20;

/// DWARF register numbers on x86-64.
const RSP: u8 = 7;
const RETURN_ADDRESS: u8 = 16;

/// Call frame instructions.
const DW_CFA_ADVANCE_LOC4: u8 = 0x04;
const DW_CFA_DEF_CFA: u8 = 0x0c;
const DW_CFA_DEF_CFA_OFFSET: u8 = 0x0e;
const DW_CFA_OFFSET: u8 = 0x80;
const DW_CFA_NOP: u8 = 0x00;

/// `.debug_frame` for `functions` (their `pcsp` tables), and the addresses it covers; None if
/// no function has a table.
pub(crate) fn debug_frame(functions: &[GoFunction<'_>]) -> Option<(Vec<u8>, Range<u64>)> {
    let mut section = cie();
    let mut covered: Option<Range<u64>> = None;
    let mut budget = gopclntab::MAX_STEPS;
    for function in functions {
        let runs = gopclntab::sp_runs(function, &mut budget);
        let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
            continue;
        };
        // An unwinder indexes code by 32-bit offsets: a function past 4 GiB is no real one.
        if last.end > u64::from(u32::MAX) {
            continue;
        }
        let Some(fde) = fde(first.start, last.end, &runs) else {
            continue;
        };
        if section.len() + fde.len() > MAX_BYTES {
            return None;
        }
        section.extend(fde);
        covered = Some(match covered {
            Some(range) => range.start.min(first.start)..range.end.max(last.end),
            None => first.start..last.end,
        });
    }
    covered.map(|covered| (section, covered))
}

/// The one CIE, at offset 0: DWARF version 3, no augmentation, code alignment 1, data
/// alignment -8; CFA = RSP + 8 and the return address at CFA - 8 (just after a call).
fn cie() -> Vec<u8> {
    let mut body = vec![0xff, 0xff, 0xff, 0xff, 3, 0];
    body.extend([1, 0x78, RETURN_ADDRESS]); // uleb 1, sleb -8, uleb 16
    body.extend([DW_CFA_DEF_CFA, RSP, 8]);
    body.extend([DW_CFA_OFFSET | RETURN_ADDRESS, 1]);
    framed(body)
}

/// The FDE of the code from `start` to `end` whose SP runs are `runs` (in order).
fn fde(start: u64, end: u64, runs: &[gopclntab::SpRun]) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(24 + 8 * runs.len());
    body.extend(0u32.to_le_bytes()); // the CIE's offset
    body.extend(start.to_le_bytes());
    body.extend(end.checked_sub(start)?.to_le_bytes());
    let mut at = start;
    let mut offset = 8u64;
    for run in runs {
        if run.start > at {
            body.push(DW_CFA_ADVANCE_LOC4);
            body.extend(u32::try_from(run.start - at).ok()?.to_le_bytes());
            at = run.start;
        }
        let cfa = run.sp_delta.checked_add(8)?;
        if cfa != offset {
            body.push(DW_CFA_DEF_CFA_OFFSET);
            uleb128(&mut body, cfa);
            offset = cfa;
        }
    }
    Some(framed(body))
}

/// `body` after its 32-bit length, padded with no-ops to a multiple of 8 bytes.
fn framed(mut body: Vec<u8>) -> Vec<u8> {
    while !(body.len() + 4).is_multiple_of(8) {
        body.push(DW_CFA_NOP);
    }
    let mut entry = (body.len() as u32).to_le_bytes().to_vec();
    entry.extend(body);
    entry
}

fn uleb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gimli::UnwindSection;
    use gimli::{BaseAddresses, CfaRule, DebugFrame, LittleEndian, RegisterRule, UnwindContext};

    fn function(start: u64, end: u64, sp_table: &'static [u8]) -> GoFunction<'static> {
        GoFunction {
            start,
            end,
            name: "main.f",
            sp_table,
        }
    }

    /// The CFA offset and return address rule gimli reads at `pc`.
    fn rule_at(section: &[u8], pc: u64) -> (i64, Option<RegisterRule<usize>>) {
        let mut frame = DebugFrame::new(section, LittleEndian);
        frame.set_address_size(8);
        let mut context = UnwindContext::new();
        let row = frame
            .unwind_info_for_address(
                &BaseAddresses::default(),
                &mut context,
                pc,
                DebugFrame::cie_from_offset,
            )
            .unwrap();
        let CfaRule::RegisterAndOffset { register, offset } = *row.cfa() else {
            panic!("CFA not RSP + offset");
        };
        assert_eq!(register, gimli::X86_64::RSP);
        (offset, row.register(gimli::X86_64::RA))
    }

    #[test]
    fn each_change_of_sp_moves_the_cfa() {
        // From -1: +1 (0) for 4 bytes, +24 (24) for 0x20 bytes, -24 (0) for 1 byte, end. Zig-zag:
        // +1 is 2, +24 is 48, -24 is 47.
        static TABLE: [u8; 7] = [2, 4, 48, 0x20, 47, 1, 0];
        let functions = [function(0x401000, 0x401025, &TABLE)];
        let (section, covered) = debug_frame(&functions).unwrap();
        assert_eq!(covered, 0x401000..0x401025);
        assert_eq!(rule_at(&section, 0x401000).0, 8);
        assert_eq!(rule_at(&section, 0x401003).0, 8);
        assert_eq!(rule_at(&section, 0x401004).0, 32);
        assert_eq!(rule_at(&section, 0x401023).0, 32);
        assert_eq!(rule_at(&section, 0x401024).0, 8);
        assert_eq!(
            rule_at(&section, 0x401010).1,
            Some(RegisterRule::Offset(-8))
        );
    }

    #[test]
    fn tables_that_are_cut_or_absent_give_no_entry() {
        assert_eq!(debug_frame(&[function(0x1000, 0x1010, &[])]), None);
        // A varint that never ends, a negative SP.
        assert_eq!(
            debug_frame(&[function(0x1000, 0x1010, &[0x80, 0x80])]),
            None
        );
        assert_eq!(debug_frame(&[function(0x1000, 0x1010, &[3, 4, 0])]), None);
        // Runs past the function's end are cut at it.
        static LONG: [u8; 3] = [2, 0x7f, 0];
        let (section, covered) = debug_frame(&[function(0x1000, 0x1010, &LONG)]).unwrap();
        assert_eq!(covered, 0x1000..0x1010);
        assert_eq!(rule_at(&section, 0x100f).0, 8);
    }
}
