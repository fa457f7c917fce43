//! Where the Go runtime keeps, in its `g` and `m` structs, what a profiler needs to follow Go's
//! stack switches (a thread running on its system stack `g0` or in a vdso call, a goroutine's
//! saved registers), read from the binary's own DWARF.
//!
//! The offsets change between Go versions (fields are added to `runtime.m` in most releases),
//! so they are read from the types the compiler describes, not from a table per version.
//!
//! The DWARF is untrusted (it comes from the profiled program's files): the work is bounded by a
//! count of entries read, and malformed input yields `None`, never a panic. Parsing only: the
//! caller loads and decompresses the sections ([`crate::ObjectInfo::go_runtime_layout`]).

use gimli::{
    Abbreviations, AttributeValue, DebugAbbrev, DebugAbbrevOffset, DebugInfo, DebugStr, Reader,
    UnitHeader, UnitOffset,
};

/// Where the fields a profiler needs lie in the Go runtime's structs of one binary: byte
/// offsets from the start of a `runtime.g` or a `runtime.m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoRuntimeLayout {
    /// `runtime.g.m`: the `m` (OS thread) running the goroutine, a pointer.
    pub g_m: u64,
    /// `runtime.g.sched.sp`: a goroutine's saved stack pointer while it is not running.
    pub g_sched_sp: u64,
    /// `runtime.g.sched.pc`: its saved program counter.
    pub g_sched_pc: u64,
    /// `runtime.g.sched.bp`: its saved frame pointer.
    pub g_sched_bp: u64,
    /// `runtime.g.stack.hi`: the top (highest address) of the goroutine's stack.
    pub g_stack_hi: u64,
    /// `runtime.m.g0`: the thread's scheduling goroutine, whose stack is the thread's own.
    pub m_g0: u64,
    /// `runtime.m.curg`: the user goroutine the thread is running, if any.
    pub m_curg: u64,
    /// `runtime.m.gsignal`: the goroutine whose stack the thread's signal handlers run on.
    pub m_gsignal: u64,
    /// `runtime.m.vdsoSP`: the stack pointer at a vDSO call (0 when not in one).
    pub m_vdso_sp: u64,
    /// `runtime.m.vdsoPC`: the return address of that call.
    pub m_vdso_pc: u64,
}

/// Entries read at most, over all units, before giving up: scanning the units means reading
/// every entry up to the runtime's types. A 1.8 MB hello world has 26 thousand entries, so this
/// is far more than real binaries need, and bounds the time a crafted file can take.
const MAX_ENTRIES: usize = 1 << 24;

/// Typedefs followed from a member to the struct it holds (Go puts one between them: the
/// member `g.sched` has the typedef `runtime.gobuf` as its type, which names the struct).
const MAX_TYPEDEFS: usize = 8;

/// Reads the layout from a file's `.debug_info`, `.debug_abbrev` and `.debug_str` (sections a
/// file lacks are passed empty). None when a struct or field is missing or the DWARF is
/// malformed.
///
/// The first definitions of `runtime.g` and `runtime.m` among the units' top-level entries are
/// used (the Go linker writes all types once, in a unit of the runtime); a later one is never
/// looked for, even when the first lacks a field: a second definition would be something other
/// than the runtime's.
pub(crate) fn read<R: Reader>(
    debug_info: &DebugInfo<R>,
    debug_abbrev: &DebugAbbrev<R>,
    debug_str: &DebugStr<R>,
) -> Option<GoRuntimeLayout> {
    read_bounded(debug_info, debug_abbrev, debug_str, MAX_ENTRIES)
}

fn read_bounded<R: Reader>(
    debug_info: &DebugInfo<R>,
    debug_abbrev: &DebugAbbrev<R>,
    debug_str: &DebugStr<R>,
    max_entries: usize,
) -> Option<GoRuntimeLayout> {
    let mut budget = Budget(max_entries);
    let mut found = Found::default();
    // Units usually share one abbreviation table (Go's all do): parse it once.
    let mut abbreviations: Option<(DebugAbbrevOffset<R::Offset>, Abbreviations)> = None;
    let mut headers = debug_info.units();
    while let Ok(Some(header)) = headers.next() {
        budget.take()?;
        let table = header.debug_abbrev_offset();
        if abbreviations
            .as_ref()
            .is_none_or(|(offset, _)| *offset != table)
        {
            let Ok(parsed) = header.abbreviations(debug_abbrev) else {
                continue;
            };
            abbreviations = Some((table, parsed));
        }
        let Some((_, abbreviations)) = abbreviations.as_ref() else {
            continue;
        };
        let unit = UnitRef {
            header: &header,
            abbreviations,
            debug_str,
        };
        unit.scan(&mut found, &mut budget)?;
        if let Some(layout) = found.layout() {
            return Some(layout);
        }
    }
    None
}

/// Counts down the entries that may still be read. `take` is None once they are used up,
/// which ends the whole search (`?`).
struct Budget(usize);

impl Budget {
    fn take(&mut self) -> Option<()> {
        self.0 = self.0.checked_sub(1)?;
        Some(())
    }
}

/// The fields of each struct, once its first definition has been read.
#[derive(Default)]
struct Found {
    g: Option<GFields>,
    m: Option<MFields>,
}

impl Found {
    fn layout(&self) -> Option<GoRuntimeLayout> {
        let (g, m) = (self.g?, self.m?);
        Some(GoRuntimeLayout {
            g_m: g.m,
            g_sched_sp: g.sched_sp,
            g_sched_pc: g.sched_pc,
            g_sched_bp: g.sched_bp,
            g_stack_hi: g.stack_hi,
            m_g0: m.g0,
            m_curg: m.curg,
            m_gsignal: m.gsignal,
            m_vdso_sp: m.vdso_sp,
            m_vdso_pc: m.vdso_pc,
        })
    }
}

#[derive(Clone, Copy)]
struct GFields {
    m: u64,
    sched_sp: u64,
    sched_pc: u64,
    sched_bp: u64,
    stack_hi: u64,
}

#[derive(Clone, Copy)]
struct MFields {
    g0: u64,
    curg: u64,
    gsignal: u64,
    vdso_sp: u64,
    vdso_pc: u64,
}

/// A member of a struct: its byte offset, and its type when that is in the same unit.
#[derive(Clone, Copy)]
struct Member<O> {
    offset: u64,
    type_: Option<UnitOffset<O>>,
}

/// One unit and what reading its entries takes.
struct UnitRef<'a, R: Reader> {
    header: &'a UnitHeader<R>,
    abbreviations: &'a Abbreviations,
    debug_str: &'a DebugStr<R>,
}

impl<R: Reader> UnitRef<'_, R> {
    /// Reads the runtime's structs defined among the unit's top-level entries (those not yet
    /// found in earlier units). None gives up the whole search: the entry budget is spent, or
    /// the first definition of a struct lacks a field. A malformed unit just ends early.
    fn scan(&self, found: &mut Found, budget: &mut Budget) -> Option<()> {
        let Ok(mut entries) = self.header.entries_raw(self.abbreviations, None) else {
            return Some(());
        };
        let mut attrs = Vec::new();
        while !entries.is_empty() {
            budget.take()?;
            let depth = entries.next_depth();
            let offset = entries.next_offset();
            let abbreviation = match entries.read_abbreviation() {
                Ok(Some(abbreviation)) => abbreviation,
                // The unit's root has ended: what follows is padding.
                Ok(None) if entries.next_depth() <= 0 => break,
                Ok(None) => continue,
                Err(_) => break,
            };
            // Only a top-level struct's attributes are decoded; the rest are skipped.
            if depth != 1 || abbreviation.tag() != gimli::DW_TAG_structure_type {
                if entries.skip_attributes(abbreviation.attributes()).is_err() {
                    break;
                }
                continue;
            }
            if entries
                .read_attributes(abbreviation.attributes(), &mut attrs)
                .is_err()
            {
                break;
            }
            let declaration = attrs.iter().any(|attr| {
                attr.name() == gimli::DW_AT_declaration
                    && matches!(attr.value(), AttributeValue::Flag(true))
            });
            if declaration {
                continue;
            }
            let name = attrs.iter().find(|attr| attr.name() == gimli::DW_AT_name);
            let Some(name) = name.and_then(|attr| attr.string_value(self.debug_str)) else {
                continue;
            };
            if found.g.is_none() && is(&name, "runtime.g") {
                found.g = Some(self.g_fields(offset, budget)?);
            } else if found.m.is_none() && is(&name, "runtime.m") {
                found.m = Some(self.m_fields(offset, budget)?);
            }
            if found.g.is_some() && found.m.is_some() {
                break;
            }
        }
        Some(())
    }

    /// The fields of the `runtime.g` struct at `offset`, nested structs included.
    fn g_fields(&self, offset: UnitOffset<R::Offset>, budget: &mut Budget) -> Option<GFields> {
        let [m, sched, stack] = self.members(offset, ["m", "sched", "stack"], budget)?;
        let (sched, stack) = (sched?, stack?);
        let gobuf = self.struct_type(sched.type_?, budget)?;
        let [sp, pc, bp] = self.members(gobuf, ["sp", "pc", "bp"], budget)?;
        let stack_type = self.struct_type(stack.type_?, budget)?;
        let [hi] = self.members(stack_type, ["hi"], budget)?;
        Some(GFields {
            m: m?.offset,
            sched_sp: sched.offset.checked_add(sp?.offset)?,
            sched_pc: sched.offset.checked_add(pc?.offset)?,
            sched_bp: sched.offset.checked_add(bp?.offset)?,
            stack_hi: stack.offset.checked_add(hi?.offset)?,
        })
    }

    /// The fields of the `runtime.m` struct at `offset`.
    fn m_fields(&self, offset: UnitOffset<R::Offset>, budget: &mut Budget) -> Option<MFields> {
        let names = ["g0", "curg", "gsignal", "vdsoSP", "vdsoPC"];
        let [g0, curg, gsignal, vdso_sp, vdso_pc] = self.members(offset, names, budget)?;
        Some(MFields {
            g0: g0?.offset,
            curg: curg?.offset,
            gsignal: gsignal?.offset,
            vdso_sp: vdso_sp?.offset,
            vdso_pc: vdso_pc?.offset,
        })
    }

    /// The members named `names` of the struct at `offset` (the first of each name), read
    /// from its direct children. None when the entry is not a struct or cannot be read.
    fn members<const N: usize>(
        &self,
        offset: UnitOffset<R::Offset>,
        names: [&str; N],
        budget: &mut Budget,
    ) -> Option<[Option<Member<R::Offset>>; N]> {
        let mut entries = self
            .header
            .entries_raw(self.abbreviations, Some(offset))
            .ok()?;
        let structure = entries.read_abbreviation().ok()??;
        if structure.tag() != gimli::DW_TAG_structure_type {
            return None;
        }
        entries.skip_attributes(structure.attributes()).ok()?;
        let mut found = [None; N];
        if !structure.has_children() {
            return Some(found);
        }
        let mut attrs = Vec::new();
        // Children are at depth 1 (relative to the struct); the null entry that ends them
        // brings the depth back to 0.
        while entries.next_depth() > 0 {
            budget.take()?;
            let depth = entries.next_depth();
            let Some(abbreviation) = entries.read_abbreviation().ok()? else {
                continue;
            };
            if depth != 1 || abbreviation.tag() != gimli::DW_TAG_member {
                entries.skip_attributes(abbreviation.attributes()).ok()?;
                continue;
            }
            entries
                .read_attributes(abbreviation.attributes(), &mut attrs)
                .ok()?;
            let name = attrs
                .iter()
                .find(|attr| attr.name() == gimli::DW_AT_name)
                .and_then(|attr| attr.string_value(self.debug_str));
            let Some(name) = name else {
                continue;
            };
            let Some(slot) = names
                .iter()
                .position(|wanted| is(&name, wanted))
                .and_then(|index| found.get_mut(index))
                .filter(|slot| slot.is_none())
            else {
                continue;
            };
            // A constant (udata, sdata or dataN), as Go writes it. The raw value: gimli reads
            // data4/data8 as a location list offset in DWARF 2 and 3. A location expression
            // (DWARF 2's `DW_OP_plus_uconst`) leaves the member unknown.
            let location = attrs
                .iter()
                .find(|attr| attr.name() == gimli::DW_AT_data_member_location)
                .and_then(|attr| attr.raw_value().udata_value());
            let Some(location) = location else {
                continue;
            };
            let type_ = attrs
                .iter()
                .find(|attr| attr.name() == gimli::DW_AT_type)
                .and_then(|attr| self.unit_offset(attr.value()));
            *slot = Some(Member {
                offset: location,
                type_,
            });
        }
        Some(found)
    }

    /// The struct that the type at `offset` is, through typedefs (Go's member types name the
    /// typedef that names the struct).
    fn struct_type(
        &self,
        mut offset: UnitOffset<R::Offset>,
        budget: &mut Budget,
    ) -> Option<UnitOffset<R::Offset>> {
        for _ in 0..MAX_TYPEDEFS {
            budget.take()?;
            let entry = self.header.entry(self.abbreviations, offset).ok()?;
            match entry.tag() {
                gimli::DW_TAG_structure_type => return Some(offset),
                gimli::DW_TAG_typedef => {
                    offset = self.unit_offset(entry.attr_value(gimli::DW_AT_type)?)?;
                }
                _ => return None,
            }
        }
        None
    }

    /// Where a reference points inside this unit. Go writes `DW_FORM_ref_addr` (offsets in
    /// the section), other compilers `DW_FORM_ref4` and kin (offsets in the unit); a reference
    /// to another unit is not followed (the runtime's types refer to their own unit).
    fn unit_offset(&self, value: AttributeValue<R>) -> Option<UnitOffset<R::Offset>> {
        match value {
            AttributeValue::UnitRef(offset) => Some(offset),
            AttributeValue::DebugInfoRef(offset) => offset.to_unit_offset(self.header),
            _ => None,
        }
    }
}

/// Whether the DWARF string `name` is `wanted`.
fn is<R: Reader>(name: &R, wanted: &str) -> bool {
    name.to_slice()
        .is_ok_and(|name| name.as_ref() == wanted.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use gimli::LittleEndian;

    use super::*;
    use crate::bytes::Bytes;
    use crate::object_info::ObjectInfo;

    /// What Go 1.19 on amd64 has (`src/runtime/runtime2.go`): `g` starts with `stack {lo, hi}`,
    /// then `stackguard0`, `stackguard1`, `_panic`, `_defer`, `m` and `sched`; `gobuf` is
    /// `{sp, pc, g, ctxt, ret, lr, bp}`; `m` starts with `g0`, `morebuf` (a gobuf), `divmod`,
    /// padding, `procid`.
    const GO_1_19_AMD64: GoRuntimeLayout = GoRuntimeLayout {
        g_m: 48,
        g_sched_sp: 56,
        g_sched_pc: 64,
        g_sched_bp: 104,
        g_stack_hi: 8,
        m_g0: 0,
        m_curg: 192,
        m_gsignal: 80,
        m_vdso_sp: 800,
        m_vdso_pc: 808,
    };

    // Hand-written DWARF 4, to cover the forms and shapes a Go build does not produce.

    const CU: u8 = 1;
    const STRUCT: u8 = 2;
    /// Member with a `udata` location and a `ref_addr` type (as Go writes them).
    const MEMBER_REF_ADDR: u8 = 3;
    /// Member with an `sdata` location and a `ref4` type.
    const MEMBER_REF4: u8 = 4;
    /// Typedef with a `ref4` type.
    const TYPEDEF: u8 = 5;
    const DECLARATION: u8 = 6;
    const SUBPROGRAM: u8 = 7;
    /// Member with a `data2` location and no type.
    const MEMBER: u8 = 8;

    /// An abbreviation: code, tag, whether it has children, attributes and their forms.
    type AbbrevSpec = (
        u8,
        gimli::DwTag,
        bool,
        &'static [(gimli::DwAt, gimli::DwForm)],
    );

    fn abbreviations() -> Vec<u8> {
        use gimli::*;
        let table: [AbbrevSpec; 8] = [
            (
                CU,
                DW_TAG_compile_unit,
                true,
                &[(DW_AT_name, DW_FORM_string)],
            ),
            (
                STRUCT,
                DW_TAG_structure_type,
                true,
                &[(DW_AT_name, DW_FORM_string)],
            ),
            (
                MEMBER_REF_ADDR,
                DW_TAG_member,
                false,
                &[
                    (DW_AT_name, DW_FORM_string),
                    (DW_AT_data_member_location, DW_FORM_udata),
                    (DW_AT_type, DW_FORM_ref_addr),
                ],
            ),
            (
                MEMBER_REF4,
                DW_TAG_member,
                false,
                &[
                    (DW_AT_name, DW_FORM_string),
                    (DW_AT_data_member_location, DW_FORM_sdata),
                    (DW_AT_type, DW_FORM_ref4),
                ],
            ),
            (
                TYPEDEF,
                DW_TAG_typedef,
                false,
                &[(DW_AT_name, DW_FORM_string), (DW_AT_type, DW_FORM_ref4)],
            ),
            (
                DECLARATION,
                DW_TAG_structure_type,
                false,
                &[
                    (DW_AT_name, DW_FORM_string),
                    (DW_AT_declaration, DW_FORM_flag_present),
                ],
            ),
            (
                SUBPROGRAM,
                DW_TAG_subprogram,
                true,
                &[(DW_AT_name, DW_FORM_string)],
            ),
            (
                MEMBER,
                DW_TAG_member,
                false,
                &[
                    (DW_AT_name, DW_FORM_string),
                    (DW_AT_data_member_location, DW_FORM_data2),
                ],
            ),
        ];
        let mut out = Vec::new();
        for (code, tag, children, attributes) in table {
            // Every code, tag, attribute and form used is below 128: one LEB128 byte each.
            out.extend([code, tag.0 as u8, u8::from(children)]);
            for (name, form) in attributes {
                out.extend([name.0 as u8, form.0 as u8]);
            }
            out.extend([0, 0]);
        }
        out.push(0);
        out
    }

    /// A DWARF 4 unit header's size (32-bit format).
    const HEADER: u32 = 11;

    /// One unit's entries, written in order. Offsets returned are unit-relative (header
    /// included), as `ref4` takes them.
    struct Unit {
        /// Where the unit starts in `.debug_info`, for `ref_addr`.
        base: u32,
        entries: Vec<u8>,
    }

    impl Unit {
        fn at(base: u32, name: &str) -> Unit {
            let mut unit = Unit {
                base,
                entries: Vec::new(),
            };
            unit.entry(CU, name);
            unit
        }

        fn entry(&mut self, code: u8, name: &str) -> u32 {
            let offset = HEADER + self.entries.len() as u32;
            self.entries.push(code);
            self.entries.extend(name.as_bytes());
            self.entries.push(0);
            offset
        }

        fn member(&mut self, name: &str, offset: u16) {
            self.entry(MEMBER, name);
            self.entries.extend(offset.to_le_bytes());
        }

        fn end_children(&mut self) {
            self.entries.push(0);
        }

        /// The runtime's `stack`, `gobuf` (behind a typedef, as Go has it) and `g`, laid out
        /// as Go 1.19 amd64 has them. `sched_type` overrides the type of `g.sched`.
        fn g(&mut self, sched_type: Option<u32>) {
            let stack = self.entry(STRUCT, "runtime.stack");
            self.member("lo", 0);
            self.member("hi", 8);
            self.end_children();
            let gobuf = self.entry(STRUCT, "runtime.gobuf");
            for (i, name) in ["sp", "pc", "g", "ctxt", "ret", "lr", "bp"]
                .iter()
                .enumerate()
            {
                self.member(name, 8 * i as u16);
            }
            self.end_children();
            let typedef = self.entry(TYPEDEF, "runtime.gobuf");
            self.entries.extend(gobuf.to_le_bytes());
            self.entry(STRUCT, "runtime.g");
            self.entry(MEMBER_REF_ADDR, "stack");
            self.entries.push(0);
            self.entries.extend((self.base + stack).to_le_bytes());
            self.member("m", 48);
            self.entry(MEMBER_REF4, "sched");
            self.entries.push(56); // sdata 56: one SLEB128 byte
            self.entries
                .extend(sched_type.unwrap_or(typedef).to_le_bytes());
            self.end_children();
        }

        fn m(&mut self, members: &[(&str, u16)]) {
            self.entry(STRUCT, "runtime.m");
            for &(name, offset) in members {
                self.member(name, offset);
            }
            self.end_children();
        }

        fn len(&self) -> u32 {
            HEADER + self.entries.len() as u32 + 1
        }
    }

    const M_MEMBERS: [(&str, u16); 6] = [
        ("g0", 0),
        ("procid", 72),
        ("gsignal", 80),
        ("curg", 192),
        ("vdsoSP", 800),
        ("vdsoPC", 808),
    ];

    /// `.debug_info` holding `units` (each closed here).
    fn debug_info(units: Vec<Unit>) -> Vec<u8> {
        let mut out = Vec::new();
        for mut unit in units {
            unit.end_children();
            assert_eq!(unit.base as usize, out.len(), "unit base");
            let length = HEADER - 4 + unit.entries.len() as u32;
            out.extend(length.to_le_bytes());
            out.extend(4u16.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.push(8);
            out.extend(unit.entries);
        }
        out
    }

    fn read_synthetic(info: &[u8], max_entries: usize) -> Option<GoRuntimeLayout> {
        let abbreviations = abbreviations();
        read_bounded(
            &DebugInfo::new(info, LittleEndian),
            &DebugAbbrev::new(&abbreviations, LittleEndian),
            &DebugStr::new(&[], LittleEndian),
            max_entries,
        )
    }

    fn runtime_unit() -> Unit {
        let mut unit = Unit::at(0, "runtime");
        unit.g(None);
        unit.m(&M_MEMBERS);
        unit
    }

    #[test]
    fn go_runtime_synthetic_layout() {
        let info = debug_info(vec![runtime_unit()]);
        assert_eq!(read_synthetic(&info, MAX_ENTRIES), Some(GO_1_19_AMD64));
    }

    #[test]
    fn go_runtime_first_top_level_definitions_win() {
        // Before the runtime's unit: a declaration, and definitions nested in a function,
        // with other offsets; after it, other definitions. None of them count.
        let mut first = Unit::at(0, "main");
        first.entry(DECLARATION, "runtime.g");
        first.entry(SUBPROGRAM, "main.main");
        first.m(&[
            ("g0", 1),
            ("procid", 2),
            ("gsignal", 6),
            ("curg", 3),
            ("vdsoSP", 4),
            ("vdsoPC", 5),
        ]);
        first.end_children();
        let mut runtime = Unit::at(first.len(), "runtime");
        runtime.g(None);
        runtime.m(&M_MEMBERS);
        let mut last = Unit::at(first.len() + runtime.len(), "other");
        last.m(&[
            ("g0", 1),
            ("procid", 2),
            ("gsignal", 6),
            ("curg", 3),
            ("vdsoSP", 4),
            ("vdsoPC", 5),
        ]);
        let info = debug_info(vec![first, runtime, last]);
        assert_eq!(read_synthetic(&info, MAX_ENTRIES), Some(GO_1_19_AMD64));
    }

    #[test]
    fn go_runtime_missing_field_gives_none() {
        // The first definition lacks vdsoPC: a complete one later is not used.
        let mut first = Unit::at(0, "runtime");
        first.g(None);
        first.m(&M_MEMBERS[..4]);
        let mut second = Unit::at(first.len(), "runtime");
        second.m(&M_MEMBERS);
        let info = debug_info(vec![first, second]);
        assert_eq!(read_synthetic(&info, MAX_ENTRIES), None);
    }

    #[test]
    fn go_runtime_typedef_cycle_gives_none() {
        let mut unit = Unit::at(0, "runtime");
        // g.sched's type: a typedef whose type is itself.
        let typedef = unit.entry(TYPEDEF, "loop");
        unit.entries.extend(typedef.to_le_bytes());
        unit.g(Some(typedef));
        unit.m(&M_MEMBERS);
        assert_eq!(read_synthetic(&debug_info(vec![unit]), MAX_ENTRIES), None);
        // A reference past the unit's end.
        let mut unit = Unit::at(0, "runtime");
        unit.g(Some(0xffff));
        unit.m(&M_MEMBERS);
        assert_eq!(read_synthetic(&debug_info(vec![unit]), MAX_ENTRIES), None);
    }

    #[test]
    fn go_runtime_truncated_or_too_long_input_gives_none() {
        let info = debug_info(vec![runtime_unit()]);
        for len in 0..info.len() {
            assert_eq!(
                read_synthetic(&info[..len], MAX_ENTRIES),
                None,
                "{len} bytes"
            );
        }
        // Cut short anywhere by the entry budget: nothing, or the whole answer.
        let needed = (0..200)
            .find(|&budget| read_synthetic(&info, budget).is_some())
            .expect("a layout within 200 entries");
        assert!(needed > 28, "the unit has 28 entries, all read: {needed}");
        for budget in needed..needed + 10 {
            assert_eq!(read_synthetic(&info, budget), Some(GO_1_19_AMD64));
        }
    }

    // A real Go binary.

    /// Builds `tests/programs/hello.go` into `dir` with `go build` and `flags`. The Go
    /// toolchain is required: without it the test fails rather than passing unnoticed.
    fn go_build(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
        go_build_with(dir, "hello.go", name, flags, "1")
    }

    /// `go build` of `tests/programs/SOURCE` with `CGO_ENABLED=cgo`.
    fn go_build_with(dir: &Path, source: &str, name: &str, flags: &[&str], cgo: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/programs")
            .join(source);
        let binary = dir.join(name);
        let output = Command::new("go")
            .env("CGO_ENABLED", cgo)
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GO111MODULE", "off")
            .output()
            .unwrap_or_else(|err| panic!("this test needs the Go toolchain (`go` on PATH): {err}"));
        assert!(
            output.status.success(),
            "go build {flags:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    }

    fn objcopy(flags: &[&str], input: &Path, output: &Path) {
        let status = Command::new("objcopy")
            .args(flags)
            .arg(input)
            .arg(output)
            .status()
            .unwrap_or_else(|err| panic!("this test needs objcopy (binutils): {err}"));
        assert!(status.success(), "objcopy {flags:?} failed");
    }

    fn go_env(name: &str) -> String {
        let output = Command::new("go").args(["env", name]).output().unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn load(path: &Path) -> ObjectInfo {
        let data = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        ObjectInfo::from_bytes(&path.display().to_string(), Bytes::from_vec(data)).unwrap()
    }

    #[test]
    fn go_runtime_layout_of_real_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let binary = go_build(dir.path(), "hello", &[]);
        let object = load(&binary);
        assert!(object.is_go() && object.has_dwarf());
        let layout = object
            .go_runtime_layout()
            .expect("the layout of a Go binary with DWARF");

        // Holds for every Go version: `stack {lo, hi}` is g's first field (its offset is known
        // to assembly), gobuf starts with sp and pc and ends with bp, g0 is m's first field.
        assert_eq!(layout.g_stack_hi, 8);
        assert_eq!(layout.g_sched_pc, layout.g_sched_sp + 8);
        assert_eq!(layout.g_sched_bp, layout.g_sched_sp + 48);
        assert_eq!(layout.m_g0, 0);
        assert_eq!(layout.m_vdso_pc, layout.m_vdso_sp + 8);
        assert!(layout.g_m > layout.g_stack_hi && layout.g_m < layout.g_sched_sp);
        let m = [
            layout.m_g0,
            layout.m_curg,
            layout.m_gsignal,
            layout.m_vdso_sp,
            layout.m_vdso_pc,
        ];
        for (i, a) in m.iter().enumerate() {
            assert!(m[i + 1..].iter().all(|b| a != b), "{layout:?}");
        }
        if go_env("GOVERSION").starts_with("go1.19") && go_env("GOARCH") == "amd64" {
            assert_eq!(layout, GO_1_19_AMD64);
        }
        // Cached: the same answer without reading again.
        assert_eq!(object.go_runtime_layout(), Some(layout));

        // The same DWARF stored otherwise: `.zdebug_*` (GNU zlib), uncompressed, or in a
        // separate debug file.
        let variant = |name: &str, flags: &[&str]| {
            let path = dir.path().join(name);
            objcopy(flags, &binary, &path);
            load(&path)
        };
        let zdebug = variant("zdebug", &["--compress-debug-sections=zlib-gnu"]);
        let plain = variant("plain", &["--decompress-debug-sections"]);
        let debug = variant("debug", &["--only-keep-debug"]);
        let without = variant("without", &["--strip-debug"]);
        assert!(!without.has_dwarf());
        // Without DWARF, the same offsets out of the runtime's machine code.
        assert_eq!(without.go_runtime_layout(), Some(layout));
        let with_debug_file = variant("with", &["--strip-debug"]).with_debug_file(debug.into());
        for object in [zdebug, plain, with_debug_file] {
            assert_eq!(
                object.go_runtime_layout(),
                Some(layout),
                "{}",
                object.name()
            );
        }

        // Linked without DWARF and symbols: the functions found by their names in
        // .gopclntab, the offsets in their code.
        let stripped = load(&go_build(dir.path(), "stripped", &["-ldflags=-s -w"]));
        assert!(stripped.is_go() && !stripped.has_dwarf());
        assert_eq!(stripped.go_runtime_layout(), Some(layout));

        // Not Go: this test binary (which has DWARF of its own, without Go's structs).
        let this = load(&std::env::current_exe().unwrap());
        assert!(!this.is_go());
        assert_eq!(this.go_runtime_layout(), None);
        assert_eq!(read_file(&this), None);

        corrupted_copies_never_panic(&object);
    }

    #[test]
    fn where_g_is_in_tls_and_which_code_debug_frame_alone_describes() {
        let dir = tempfile::tempdir().unwrap();
        // Without cgo, the runtime sets FS itself: g at -8, no PT_TLS, no .eh_frame.
        let pure = load(&go_build_with(dir.path(), "hello.go", "pure", &[], "0"));
        assert_eq!(pure.go_tls_g_offset(), Some(-8));
        assert_eq!(pure.go_tls_g_offset(), tls_offset_in_code(&pure));
        assert_eq!(pure.unwind_sections().debug_frame_only, None);
        // Linked by the C toolchain: the C library places TLS, and .eh_frame describes the C
        // code while Go's own is in .debug_frame alone.
        let external = load(&go_build(
            dir.path(),
            "external",
            &["-ldflags=-linkmode=external"],
        ));
        let offset = external.go_tls_g_offset();
        assert!(offset.is_some_and(|o| o < 0), "{offset:?}");
        assert_eq!(offset, tls_offset_in_code(&external));
        let sections = external.unwind_sections();
        assert!(sections.eh_frame.is_some() && sections.debug_frame.is_some());
        let go_text = sections.debug_frame_only.expect("Go's code apart");
        let symbols = external.symbols();
        for function in [
            "main.main",
            "runtime.mstart.abi0",
            "runtime.cgocallback.abi0",
        ] {
            let at = symbols.range_of(function).expect(function).start;
            assert!(
                go_text.contains(&at),
                "{function} at {at:#x} not in {go_text:x?}"
            );
        }
        let threadentry = symbols
            .range_of("threadentry")
            .expect("runtime/cgo's C code");
        assert!(!go_text.contains(&threadentry.start), "{threadentry:x?}");
        // cgo linked by Go's own linker (the default for the standard library's cgo): a TLS
        // block of g alone, and no `runtime.tlsg` in `.symtab`.
        let internal = load(&go_build_with(dir.path(), "hello_net.go", "net", &[], "1"));
        assert_eq!(internal.go_tls_g_offset(), Some(-8));
        assert_eq!(internal.go_tls_g_offset(), tls_offset_in_code(&internal));
        // Not Go: no g anywhere.
        assert_eq!(
            load(&std::env::current_exe().unwrap()).go_tls_g_offset(),
            None
        );
    }

    /// The FS displacement that the binary's own code reads g at: the most frequent `disp32`
    /// of `mov FS:disp32, reg` (64 REX.W 8B modrm(rm=100, mod=00) 25 disp32) in `.text`.
    fn tls_offset_in_code(object: &ObjectInfo) -> Option<i64> {
        let text = object.unwind_sections().text?;
        let mut counts = std::collections::HashMap::<i32, usize>::new();
        for window in text.windows(9) {
            let rex_w = window[1] & 0xf8 == 0x48;
            let modrm = window[3];
            let sib_disp32 = modrm & 0xc7 == 0x04 && window[4] == 0x25;
            if window[0] == 0x64 && rex_w && window[2] == 0x8b && sib_disp32 {
                let disp = i32::from_le_bytes(window[5..9].try_into().unwrap());
                *counts.entry(disp).or_default() += 1;
            }
        }
        let (disp, _) = counts.into_iter().max_by_key(|&(_, n)| n)?;
        Some(i64::from(disp))
    }

    /// The parser over a file's sections, without the `is_go` check.
    fn read_file(object: &ObjectInfo) -> Option<GoRuntimeLayout> {
        let elf = crate::elf::parse("test", object.data()).unwrap();
        let section = |name| crate::dwarf::section_reader(&elf, object.data(), name);
        read(
            &section(".debug_info").into(),
            &section(".debug_abbrev").into(),
            &section(".debug_str").into(),
        )
    }

    /// Truncated and byte-flipped copies of a real `.debug_info`: None or a layout, never a
    /// panic or a hang.
    fn corrupted_copies_never_panic(object: &ObjectInfo) {
        let elf = crate::elf::parse("test", object.data()).unwrap();
        let section = |name| crate::elf::section_bytes(&elf, object.data(), name).unwrap();
        let (info, abbrev) = (section(".debug_info"), section(".debug_abbrev"));
        let read_copy = |info: &[u8]| {
            read(
                &DebugInfo::new(info, LittleEndian),
                &DebugAbbrev::new(&abbrev, LittleEndian),
                &DebugStr::new(&[], LittleEndian),
            )
        };
        assert!(read_copy(&info).is_some());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |below: usize| {
            // xorshift64: reproducible without a dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        for _ in 0..50 {
            let _ = read_copy(&info[..random(info.len())]);
            let mut copy = info.to_vec();
            for _ in 0..1 + random(32) {
                let at = random(copy.len());
                copy[at] = random(256) as u8;
            }
            let _ = read_copy(&copy);
        }
    }
}
