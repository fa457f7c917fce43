//! Function symbols from ELF symbol tables (`.symtab`, `.dynsym`, MiniDebugInfo), sorted for
//! binary search.

use object::{Object, ObjectSection, ObjectSymbol, SectionIndex, SymbolKind, SymbolSection};

use crate::bytes::Bytes;
use crate::elf::Elf;
use crate::gopclntab;

/// Upper bound on symbols kept from one object (the largest real binaries have a few
/// million); beyond it, a corrupt table would only cost memory.
const MAX_SYMBOLS: usize = 1 << 24;
/// Symbols overlap rarely (aliases with different sizes, nested local labels); this bounds how
/// far back a lookup walks to find the one that contains an address.
const MAX_BACKTRACK: usize = 16;

/// One function symbol. Its name lives in [`SymbolTable::names`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u64,
    /// Exclusive. For symbols without a size: the next symbol's start, bounded by the end of the
    /// containing section.
    end: u64,
    name_start: u32,
    name_len: u32,
}

/// A sorted, deduplicated table of function symbols.
#[derive(Debug, Default)]
pub(crate) struct SymbolTable {
    entries: Vec<Entry>,
    names: String,
}

/// A symbol as read from a table, before sorting.
struct Candidate {
    start: u64,
    size: u64,
    section_end: Option<u64>,
    rank: Rank,
    name_start: u32,
    name_len: u32,
}

/// Among symbols at the same address, the smallest rank is the one shown: sized before
/// unsized, then the public spelling (`nanosleep` over `__nanosleep`), then global before weak
/// before local, then the earlier table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    size_unknown: bool,
    leading_underscores: usize,
    binding: u8,
    table: u8,
}

/// Collects symbols from several tables, then sorts them into a [`SymbolTable`].
#[derive(Default)]
pub(crate) struct SymbolTableBuilder {
    candidates: Vec<Candidate>,
    names: String,
    tables: u8,
}

impl SymbolTableBuilder {
    /// Adds the function symbols of the file's `.symtab` (`dynamic == false`) or `.dynsym`.
    pub fn add(&mut self, elf: &Elf<'_>, dynamic: bool) {
        let table = self.tables;
        self.tables = self.tables.saturating_add(1);
        let symbols = if dynamic {
            elf.dynamic_symbols()
        } else {
            elf.symbols()
        };
        for symbol in symbols {
            if self.candidates.len() >= MAX_SYMBOLS {
                tracing::debug!("symbol table truncated at {MAX_SYMBOLS} entries");
                return;
            }
            if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
                continue;
            }
            let SymbolSection::Section(section) = symbol.section() else {
                continue;
            };
            let Ok(name) = symbol.name() else { continue };
            if name.is_empty() {
                continue;
            }
            let binding = symbol.elf_symbol().st_bind();
            self.push(
                Candidate {
                    start: symbol.address(),
                    size: symbol.size(),
                    section_end: section_end(elf, section),
                    rank: Rank {
                        size_unknown: symbol.size() == 0,
                        leading_underscores: name.bytes().take_while(|&b| b == b'_').count(),
                        binding: binding_rank(binding),
                        table,
                    },
                    name_start: 0,
                    name_len: 0,
                },
                name,
            );
        }
    }

    /// Adds the functions of Go's `.gopclntab` (see [`crate::gopclntab`]), ranked after every
    /// ELF symbol: for Go binaries linked without `.symtab`.
    pub fn add_go(&mut self, elf: &Elf<'_>, file: &Bytes) {
        // PIE builds put the table in a section of relocated read-only data.
        let pclntab = [".gopclntab", ".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|name| crate::elf::section_bytes(elf, file, name));
        let Some(pclntab) = pclntab else {
            return;
        };
        let text_start = elf.section_by_name(".text").map_or(0, |s| s.address());
        let table = self.tables;
        self.tables = self.tables.saturating_add(1);
        for function in gopclntab::functions(&pclntab, text_start) {
            if self.candidates.len() >= MAX_SYMBOLS {
                return;
            }
            self.push(
                Candidate {
                    start: function.start,
                    size: function.end - function.start,
                    section_end: None,
                    rank: Rank {
                        size_unknown: false,
                        leading_underscores: 0,
                        binding: u8::MAX,
                        table,
                    },
                    name_start: 0,
                    name_len: 0,
                },
                function.name,
            );
        }
    }

    fn push(&mut self, mut candidate: Candidate, name: &str) {
        let (Ok(name_start), Ok(name_len)) =
            (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return;
        };
        if name_start.checked_add(name_len).is_none() {
            return;
        }
        candidate.name_start = name_start;
        candidate.name_len = name_len;
        self.names.push_str(name);
        self.candidates.push(candidate);
    }

    pub fn build(mut self) -> SymbolTable {
        self.candidates.sort_unstable_by_key(|c| (c.start, c.rank));
        // One symbol per address: the best-ranked, which sorting put first.
        self.candidates.dedup_by_key(|c| c.start);
        let next_starts: Vec<u64> = self
            .candidates
            .iter()
            .skip(1)
            .map(|c| c.start)
            .chain(std::iter::once(u64::MAX))
            .collect();
        let entries = self
            .candidates
            .iter()
            .zip(next_starts)
            .map(|(c, next_start)| Entry {
                start: c.start,
                end: if c.size != 0 {
                    c.start.saturating_add(c.size)
                } else {
                    next_start.min(c.section_end.unwrap_or(u64::MAX))
                },
                name_start: c.name_start,
                name_len: c.name_len,
            })
            .collect();
        SymbolTable {
            entries,
            names: self.names,
        }
    }
}

impl SymbolTable {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the symbol named `name` starts and ends (a linear scan: for the few names a
    /// caller needs once per file).
    pub fn range_of(&self, name: &str) -> Option<std::ops::Range<u64>> {
        self.entries
            .iter()
            .find(|e| self.name(e) == Some(name))
            .map(|e| e.start..e.end)
    }

    /// The symbol containing `svma`: its start address and name.
    pub fn lookup(&self, svma: u64) -> Option<(u64, &str)> {
        let after = self.entries.partition_point(|e| e.start <= svma);
        self.entries
            .get(..after)?
            .iter()
            .rev()
            .take(MAX_BACKTRACK)
            .find(|e| svma < e.end)
            .and_then(|e| Some((e.start, self.name(e)?)))
    }

    fn name(&self, entry: &Entry) -> Option<&str> {
        let start = usize::try_from(entry.name_start).ok()?;
        let len = usize::try_from(entry.name_len).ok()?;
        self.names.get(start..start.checked_add(len)?)
    }
}

fn binding_rank(binding: u8) -> u8 {
    match binding {
        object::elf::STB_GLOBAL => 0,
        object::elf::STB_WEAK => 1,
        _ => 2,
    }
}

fn section_end(elf: &Elf<'_>, index: SectionIndex) -> Option<u64> {
    let section = elf.section_by_index(index).ok()?;
    section.address().checked_add(section.size())
}
