//! Names for x86-64 PLT stubs (`strtol@plt`), which no symbol table covers: without them a
//! sample in a stub shows up as a bare address.
//!
//! Stubs are matched to symbols in two ways. Preferably by decoding the stub's
//! `jmp *disp(%rip)`: the GOT slot it jumps through is the `r_offset` of a `JUMP_SLOT` or
//! `GLOB_DAT` relocation, whose symbol names the stub. This works for `.plt` (no IBT),
//! `.plt.sec` and `.plt.got` alike, and does not depend on `.rela.plt` order (ld moves
//! `IRELATIVE` relocations last, so position alone misnames libc's stubs). IBT `.plt` entries
//! have no GOT jump (they push a relocation index and jump to PLT0): they are named after the
//! relocation they push, or failing that after their position (entry i + 1 for relocation i).

use std::collections::HashMap;

use object::elf::{EM_X86_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT};
use object::read::elf::{FileHeader, Rela, SectionHeader};
use object::{Object, ObjectSection, SymbolIndex};

use crate::elf::{Elf, ElfSection};

/// x86-64 `.plt` and `.plt.sec` entries are 16 bytes; `.plt.got` entries 8 (16 with IBT).
const STUB_SIZE: u64 = 16;
/// Upper bound on stubs and relocations read from one object. Real binaries have a few
/// thousand imports; counts come from untrusted section sizes.
const MAX_ENTRIES: usize = 1 << 20;
/// Dynamic symbol names longer than this are not real and are ignored.
const MAX_NAME_LEN: usize = 4096;
/// The name of a stub whose target is unknown, and of PLT0 (the lazy-binding trampoline).
pub(crate) const UNKNOWN: &str = "[plt]";
/// `endbr64`, which starts every stub of an IBT-enabled PLT.
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// The `bnd` prefix (MPX leftovers) IBT stubs put before their `jmp`.
const BND_PREFIX: u8 = 0xf2;

/// One stub: `[start, end)` and the symbol it calls (`None`: unknown, shown as [`UNKNOWN`]).
#[derive(Debug)]
struct Stub {
    start: u64,
    end: u64,
    symbol: Option<Box<str>>,
}

/// The PLT stubs of one object, sorted by address.
#[derive(Debug, Default)]
pub(crate) struct PltTable {
    stubs: Vec<Stub>,
}

impl PltTable {
    /// Reads the stubs of `.plt`, `.plt.sec` and `.plt.got`. Empty for other architectures and
    /// for anything malformed.
    pub fn read(elf: &Elf<'_>) -> PltTable {
        if elf.elf_header().e_machine(elf.endian()) != EM_X86_64 {
            return PltTable::default();
        }
        let relocations = Relocations::read(elf);
        let mut stubs = Vec::new();
        let plt_sec = elf.section_by_name(".plt.sec");
        if let Some(section) = &plt_sec {
            add_stubs(&mut stubs, section, STUB_SIZE, &relocations, Some);
        }
        if let Some(section) = elf.section_by_name(".plt") {
            // Entry 0 is PLT0; entry i (i >= 1) belongs to relocation i - 1.
            add_stubs(&mut stubs, &section, STUB_SIZE, &relocations, |i| {
                i.checked_sub(1)
            });
            if let Some(plt0) = stubs.iter_mut().find(|s| s.start == section.address()) {
                plt0.symbol = None;
            }
        }
        if let Some(section) = elf.section_by_name(".plt.got") {
            // No relocation index to fall back on: only the GOT slot identifies these.
            let ibt = section.data().is_ok_and(|d| d.starts_with(&ENDBR64));
            let size = if ibt { 16 } else { 8 };
            add_stubs(&mut stubs, &section, size, &relocations, |_| None);
        }
        stubs.sort_unstable_by_key(|s| s.start);
        PltTable { stubs }
    }

    /// The stub containing `svma`: the symbol it calls, or [`UNKNOWN`]. `None` outside the PLT.
    pub fn lookup(&self, svma: u64) -> Option<&str> {
        let after = self.stubs.partition_point(|s| s.start <= svma);
        let stub = self.stubs.get(after.checked_sub(1)?)?;
        (svma < stub.end).then(|| stub.symbol.as_deref().unwrap_or(UNKNOWN))
    }
}

/// The symbols of the PLT's relocations: in `.rela.plt` order, and by GOT slot.
#[derive(Default)]
struct Relocations {
    /// `.rela.plt` in order; `None` for relocations without a usable symbol (`IRELATIVE`).
    jump_slots: Vec<Option<Box<str>>>,
    by_got_slot: HashMap<u64, Box<str>>,
}

impl Relocations {
    fn read(elf: &Elf<'_>) -> Relocations {
        let mut relocations = Relocations::default();
        let endian = elf.endian();
        let symbols = elf.elf_dynamic_symbol_table();
        let name = |index: u32| -> Option<Box<str>> {
            let symbol = symbols
                .symbol(SymbolIndex(usize::try_from(index).ok()?))
                .ok()?;
            let name = symbols.symbol_name(endian, symbol).ok()?;
            let name = std::str::from_utf8(name).ok()?;
            (!name.is_empty() && name.len() <= MAX_NAME_LEN).then(|| name.into())
        };
        for section in elf.sections() {
            let Ok(section_name) = section.name() else {
                continue;
            };
            let is_plt = section_name == ".rela.plt";
            // `.rela.dyn` holds the GLOB_DAT relocations `.plt.got` stubs jump through.
            if !is_plt && section_name != ".rela.dyn" {
                continue;
            }
            let header = section.elf_section_header();
            let Ok(Some((entries, _))) = header.rela(endian, elf.data()) else {
                continue;
            };
            for entry in entries.iter().take(MAX_ENTRIES) {
                let kind = entry.r_type(endian, false);
                let symbol = if kind == R_X86_64_JUMP_SLOT || kind == R_X86_64_GLOB_DAT {
                    name(entry.r_sym(endian, false))
                } else {
                    None
                };
                if let Some(symbol) = &symbol {
                    if relocations.by_got_slot.len() < MAX_ENTRIES {
                        relocations
                            .by_got_slot
                            .insert(entry.r_offset(endian), symbol.clone());
                    }
                }
                if is_plt && relocations.jump_slots.len() < MAX_ENTRIES {
                    relocations.jump_slots.push(symbol);
                }
            }
        }
        relocations
    }
}

/// Adds the `size`-byte stubs of `section`. A stub is named after the GOT slot it jumps
/// through; one without a GOT jump (IBT `.plt`) after the `.rela.plt` entry it pushes the
/// index of, else after entry `index(i)` by position.
fn add_stubs(
    stubs: &mut Vec<Stub>,
    section: &ElfSection<'_, '_>,
    size: u64,
    relocations: &Relocations,
    index: impl Fn(usize) -> Option<usize>,
) {
    let Some(range) = crate::elf::section_svma(section) else {
        return;
    };
    let code = section.data().unwrap_or_default();
    let count = (range.end - range.start) / size;
    for i in 0..count.min(MAX_ENTRIES as u64) {
        if stubs.len() >= MAX_ENTRIES {
            return;
        }
        // In range: i * size < section size, and start + section size did not overflow.
        let start = range.start + i * size;
        let offset = usize::try_from(i * size).ok();
        let stub_code = offset.and_then(|o| code.get(o..o.checked_add(size as usize)?));
        let symbol = match stub_code.and_then(|c| got_slot(c, start)) {
            // A GOT slot without a named relocation: IRELATIVE (a local ifunc), left unnamed
            // rather than guessed by position, since ld sorts those relocations last.
            Some(slot) => relocations.by_got_slot.get(&slot),
            None => {
                let index = stub_code
                    .and_then(push_index)
                    .or_else(|| index(usize::try_from(i).ok()?));
                index.and_then(|i| relocations.jump_slots.get(i)?.as_ref())
            }
        };
        stubs.push(Stub {
            start,
            end: start + size,
            symbol: symbol.cloned(),
        });
    }
}

/// The GOT slot a stub jumps through: the target of its opening `jmp *disp32(%rip)` (`ff 25`,
/// possibly after `endbr64` and a `bnd` prefix), given the stub's code and address. Decoded
/// exactly rather than searched for: later bytes (a `push` immediate) could contain `ff 25`.
fn got_slot(code: &[u8], address: u64) -> Option<u64> {
    let mut at = 0;
    if code.starts_with(&ENDBR64) {
        at += ENDBR64.len();
    }
    if code.get(at) == Some(&BND_PREFIX) {
        at += 1;
    }
    if code.get(at..at + 2)? != [0xff, 0x25] {
        return None;
    }
    let disp = code.get(at + 2..at + 6)?;
    let disp = i32::from_le_bytes(disp.try_into().ok()?);
    // %rip is the address of the next instruction.
    let next = address.checked_add(u64::try_from(at + 6).ok()?)?;
    next.checked_add_signed(i64::from(disp))
}

/// The relocation index an IBT `.plt` entry (`endbr64; push $index; bnd jmp PLT0`) pushes for
/// the lazy binder.
fn push_index(code: &[u8]) -> Option<usize> {
    const PUSH_IMM32: u8 = 0x68;
    let code = code.strip_prefix(&ENDBR64)?;
    if code.first() != Some(&PUSH_IMM32) {
        return None;
    }
    let index = u32::from_le_bytes(code.get(1..5)?.try_into().ok()?);
    usize::try_from(index).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_stub_shapes() {
        // Non-IBT `.plt` entry: jmp *0x2fe2(%rip) at 0x1030 -> slot 0x1036 + 0x2fe2.
        let plain = [
            0xff, 0x25, 0xe2, 0x2f, 0, 0, 0x68, 3, 0, 0, 0, 0xe9, 0, 0, 0, 0,
        ];
        assert_eq!(got_slot(&plain, 0x1030), Some(0x4018));
        // `.plt.sec`: endbr64; bnd jmp *disp(%rip).
        let sec = [0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0x10, 0, 0, 0];
        assert_eq!(got_slot(&sec, 0x1000), Some(0x1000 + 11 + 0x10));
        // IBT `.plt`: endbr64; push $7; bnd jmp PLT0 -- no GOT jump, index 7.
        let ibt = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x68, 7, 0, 0, 0, 0xf2, 0xe9, 0, 0, 0, 0,
        ];
        assert_eq!(got_slot(&ibt, 0x1000), None);
        assert_eq!(push_index(&ibt), Some(7));
    }

    #[test]
    fn truncated_or_wrapping_stubs_decode_to_nothing() {
        assert_eq!(got_slot(&[], 0), None);
        assert_eq!(got_slot(&[0xff, 0x25, 1], 0), None);
        assert_eq!(got_slot(&[0xff, 0x25, 0, 0, 0, 0x7f], u64::MAX - 2), None);
        assert_eq!(push_index(&[0xf3, 0x0f, 0x1e, 0xfa, 0x68, 1]), None);
    }
}
