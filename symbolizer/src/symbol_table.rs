//! Function symbols from ELF symbol tables (`.symtab`, `.dynsym`, MiniDebugInfo), sorted for
//! binary search.

use object::read::elf::Sym;
use object::{Object, ObjectSection, ObjectSymbol, SectionIndex, SymbolKind, SymbolSection};

use crate::bytes::Bytes;
use crate::elf::Elf;
use crate::gopclntab;

/// Upper bound on symbols kept from one object (the largest real binaries have a few
/// million); beyond it, a corrupt table would only cost memory.
const MAX_SYMBOLS: usize = 1 << 24;
/// Symbols overlap rarely (aliases with different sizes, nested local labels); this bounds how
/// far back (in addresses) a lookup walks to find the one that contains an address.
const MAX_BACKTRACK: usize = 16;
/// Of the symbols at one address, this many are ranked to choose its name (code folding can
/// put thousands at one address; the table is sorted so the likeliest come first).
const MAX_ALIASES: usize = 64;
/// A name is read up to its NUL or this many bytes: a string table that is not terminated
/// costs a bounded scan, not a walk to the end of the file.
const MAX_NAME: usize = 1024 * 1024;
/// Lookups between two releases of the string tables' pages: each lookup can make up to a
/// 64 KiB fault-around block resident, so this bounds what names keep resident (~4 MiB)
/// while costing one `madvise` per table every so many lookups, not one per name.
const LOOKUPS_PER_RELEASE: u32 = 64;

/// One function symbol. Its name stays in the string table it was read from (file-backed:
/// no copy of the names is made, and only the pages of the names looked up are read).
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: u64,
    /// Exclusive. While building, for symbols without a size: the end of the containing
    /// section; then the next symbol's start, bounded by it.
    end: u64,
    /// Offset of the NUL-terminated name in `strings[table]`.
    name: u32,
    table: u8,
    size_unknown: bool,
    binding: u8,
}

/// A sorted table of function symbols.
#[derive(Default)]
pub(crate) struct SymbolTable {
    symbols: Vec<Symbol>,
    /// The string tables names point into, one per table added.
    strings: Vec<Bytes>,
    /// Lookups since the string tables' pages were last released.
    lookups: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for SymbolTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymbolTable")
            .field("symbols", &self.symbols.len())
            .finish()
    }
}

/// Among symbols at the same address, the smallest rank is the one shown: named before
/// unreadable, sized before unsized, then the public spelling (`nanosleep` over
/// `__nanosleep`), then global before weak before local, then the earlier table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    nameless: bool,
    size_unknown: bool,
    leading_underscores: usize,
    binding: u8,
    table: u8,
}

/// Collects symbols from several tables, then sorts them into a [`SymbolTable`].
#[derive(Default)]
pub(crate) struct SymbolTableBuilder {
    table: SymbolTable,
}

impl SymbolTableBuilder {
    /// Adds the function symbols of the file's `.symtab` (`dynamic == false`) or `.dynsym`.
    /// `file` is the bytes `elf` was parsed from: names are kept as offsets into its string
    /// table, read only when looked up. Returns how many were added.
    pub fn add(&mut self, elf: &Elf<'_>, file: &Bytes, dynamic: bool) -> usize {
        let symbols = if dynamic {
            elf.elf_dynamic_symbol_table()
        } else {
            elf.elf_symbol_table()
        };
        if symbols.is_empty() {
            return 0;
        }
        let strings = elf
            .section_by_index(symbols.string_section())
            .ok()
            .and_then(|section| crate::elf::section_data(file, &section));
        let Some(table) = strings.and_then(|strings| self.add_strings(strings)) else {
            return 0;
        };
        let before = self.table.symbols.len();
        let room = MAX_SYMBOLS.saturating_sub(self.table.symbols.len());
        self.table.symbols.reserve(symbols.len().min(room));
        let endian = elf.endian();
        let iter = if dynamic {
            elf.dynamic_symbols()
        } else {
            elf.symbols()
        };
        for symbol in iter {
            if self.table.symbols.len() >= MAX_SYMBOLS {
                tracing::debug!("symbol table truncated at {MAX_SYMBOLS} entries");
                break;
            }
            if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
                continue;
            }
            let SymbolSection::Section(section) = symbol.section() else {
                continue;
            };
            // Offset 0 is the empty name; the name itself is not read here.
            let name = symbol.elf_symbol().st_name(endian);
            if name == 0 {
                continue;
            }
            let (start, size) = (symbol.address(), symbol.size());
            self.table.symbols.push(Symbol {
                start,
                end: if size == 0 {
                    section_end(elf, section).unwrap_or(u64::MAX)
                } else {
                    start.saturating_add(size)
                },
                name,
                table,
                size_unknown: size == 0,
                binding: binding_rank(symbol.elf_symbol().st_bind()),
            });
        }
        // The entries were read once, here; their pages need not stay resident.
        if let Some(entries) = elf
            .section_by_index(symbols.section())
            .ok()
            .and_then(|section| crate::elf::section_data(file, &section))
        {
            entries.release_pages();
        }
        self.table.symbols.len() - before
    }

    /// Adds the functions of Go's `.gopclntab` (see [`crate::gopclntab`]), ranked after every
    /// ELF symbol: for Go binaries linked without `.symtab`.
    pub fn add_go(&mut self, elf: &Elf<'_>, file: &Bytes) {
        let Some((pclntab, text_start)) = gopclntab::section(elf, file) else {
            return;
        };
        let base = pclntab.as_ptr() as usize;
        let functions = gopclntab::functions(&pclntab, text_start);
        let Some(table) = self.add_strings(pclntab.clone()) else {
            return;
        };
        for function in functions {
            if self.table.symbols.len() >= MAX_SYMBOLS {
                return;
            }
            // The name is a slice of the table: its offset there.
            let offset = (function.name.as_ptr() as usize).checked_sub(base);
            let Some(name) = offset.and_then(|o| u32::try_from(o).ok()) else {
                continue;
            };
            self.table.symbols.push(Symbol {
                start: function.start,
                end: function.end,
                name,
                table,
                size_unknown: false,
                binding: u8::MAX,
            });
        }
    }

    /// Keeps `strings` for names to point into; None past 255 tables.
    fn add_strings(&mut self, strings: Bytes) -> Option<u8> {
        let table = u8::try_from(self.table.strings.len()).ok()?;
        self.table.strings.push(strings);
        Some(table)
    }

    /// Sorts the symbols. Symbols that share an address (aliases, C++ constructor variants,
    /// folded identical code) are all kept: choosing among them needs their names, which are
    /// read only for the addresses looked up.
    pub fn build(self) -> SymbolTable {
        let mut table = self.table;
        // Stable: symbols that rank the same (C++ constructor variants, folded code) keep their
        // table order, so the same one names their address in every run.
        table
            .symbols
            .sort_by_key(|s| (s.start, s.size_unknown, s.binding, s.table));
        // Unsized symbols run to the next symbol at another address, within their section.
        let mut next_start = u64::MAX;
        let mut previous = u64::MAX;
        for symbol in table.symbols.iter_mut().rev() {
            if symbol.start != previous {
                next_start = previous;
                previous = symbol.start;
            }
            if symbol.size_unknown {
                symbol.end = symbol.end.min(next_start);
            }
        }
        table.symbols.shrink_to_fit();
        table
    }
}

impl SymbolTable {
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Where the symbol named `name` starts and ends (a linear scan: for the few names a
    /// caller needs once per file).
    pub fn range_of(&self, name: &str) -> Option<std::ops::Range<u64>> {
        let found = self
            .symbols
            .iter()
            .find(|s| self.name(s) == Some(name))
            .map(|s| s.start..s.end);
        self.release_pages();
        found
    }

    /// The symbol containing `svma`: its start address and name. Of the symbols at one
    /// address, the best-ranked is the one that names it; an address whose symbols have no
    /// readable name is skipped, as if they were not there.
    ///
    /// The name is copied out, and every [`LOOKUPS_PER_RELEASE`] lookups the string tables'
    /// pages are released ([`Bytes::release_pages`]): a profile names thousands of functions
    /// spread over tens of megabytes of names (rustc, LLVM), and each page is needed once.
    pub fn lookup(&self, svma: u64) -> Option<(u64, String)> {
        let found = self.find(svma);
        let lookups = self
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if lookups % LOOKUPS_PER_RELEASE == LOOKUPS_PER_RELEASE - 1 {
            self.release_pages();
        }
        found
    }

    fn find(&self, svma: u64) -> Option<(u64, String)> {
        let mut end = self.symbols.partition_point(|s| s.start <= svma);
        for _ in 0..MAX_BACKTRACK {
            let start = self.symbols.get(end.checked_sub(1)?)?.start;
            let first = self.symbols[..end].partition_point(|s| s.start < start);
            let group = &self.symbols[first..end.min(first + MAX_ALIASES)];
            let best = group.iter().min_by_key(|s| self.rank(s))?;
            if let Some(name) = self.name(best) {
                return (svma < best.end).then(|| (best.start, name.to_owned()));
            }
            end = first;
        }
        None
    }

    /// Drops the string tables' pages from resident memory.
    pub fn release_pages(&self) {
        self.strings.iter().for_each(Bytes::release_pages);
    }

    /// The name, up to its NUL (or [`MAX_NAME`] bytes); None when empty, not UTF-8 or out of
    /// its table.
    fn name(&self, symbol: &Symbol) -> Option<&str> {
        let strings = self.strings.get(usize::from(symbol.table))?;
        let rest = strings.get(usize::try_from(symbol.name).ok()?..)?;
        let rest = &rest[..rest.len().min(MAX_NAME)];
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let name = std::str::from_utf8(&rest[..len]).ok()?;
        (!name.is_empty()).then_some(name)
    }

    fn rank(&self, symbol: &Symbol) -> Rank {
        let name = self.name(symbol);
        Rank {
            nameless: name.is_none(),
            size_unknown: symbol.size_unknown,
            leading_underscores: name
                .unwrap_or_default()
                .bytes()
                .take_while(|&b| b == b'_')
                .count(),
            binding: symbol.binding,
            table: symbol.table,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn symbol(start: u64, end: u64, name: u32, binding: u8, size_unknown: bool) -> Symbol {
        Symbol {
            start,
            end,
            name,
            table: 0,
            size_unknown,
            binding,
        }
    }

    /// A table over one string table: "\0__nanosleep\0nanosleep\0helper\0outer\0\xff\0" then
    /// "cut" with no NUL.
    fn table(symbols: Vec<Symbol>) -> SymbolTable {
        let strings =
            Bytes::from_vec(b"\0__nanosleep\0nanosleep\0helper\0outer\0\xff\0cut".to_vec());
        SymbolTableBuilder {
            table: SymbolTable {
                symbols,
                strings: vec![strings],
                lookups: Default::default(),
            },
        }
        .build()
    }

    #[test]
    fn aliases_are_named_by_their_public_spelling() {
        // __nanosleep (global) and nanosleep (weak) at one address: nanosleep is shown.
        let table = table(vec![
            symbol(0x100, 0x140, 1, 0, false),
            symbol(0x100, 0x140, 13, 1, false),
        ]);
        assert_eq!(table.lookup(0x120), Some((0x100, "nanosleep".to_owned())));
        assert_eq!(table.range_of("__nanosleep"), Some(0x100..0x140));
    }

    #[test]
    fn unsized_symbols_run_to_the_next_address_and_lookups_walk_back() {
        let table = table(vec![
            // outer: unsized, in a section ending at 0x1000.
            symbol(0x200, 0x1000, 30, 0, true),
            // helper: sized 0x10, inside outer's range.
            symbol(0x300, 0x310, 23, 0, false),
            symbol(0x400, 0x1000, 1, 0, true),
        ]);
        assert_eq!(table.lookup(0x250), Some((0x200, "outer".to_owned())));
        assert_eq!(table.lookup(0x305), Some((0x300, "helper".to_owned())));
        // Past helper's end, outer ended at helper's start: nothing contains 0x350.
        assert_eq!(table.lookup(0x350), None);
        assert_eq!(table.lookup(0x999), Some((0x400, "__nanosleep".to_owned())));
        assert_eq!(table.lookup(0x1000), None);
        assert_eq!(table.lookup(0x10), None);
    }

    #[test]
    fn names_out_of_their_table_not_utf8_or_unterminated_are_bounded() {
        let table = table(vec![
            symbol(0x100, 0x110, 9999, 0, false),
            symbol(0x200, 0x210, 36, 0, false),
            symbol(0x300, 0x310, 38, 0, false),
        ]);
        assert_eq!(table.lookup(0x105), None);
        assert_eq!(table.lookup(0x205), None, "not UTF-8");
        assert_eq!(table.lookup(0x305), Some((0x300, "cut".to_owned())));
    }

    #[test]
    fn an_address_whose_symbols_have_no_name_is_skipped() {
        let table = table(vec![
            symbol(0x100, 0x400, 23, 0, false),
            // Sized, but its name is out of the table: the lookup walks back to helper.
            symbol(0x200, 0x300, 9999, 0, false),
        ]);
        assert_eq!(table.lookup(0x250), Some((0x100, "helper".to_owned())));
    }

    #[test]
    fn equally_ranked_aliases_keep_their_table_order() {
        // Two names, same rank: the first in the table wins, whatever the sort does.
        let mut symbols: Vec<Symbol> = (0..200)
            .map(|i| symbol(0x1000 + i * 16, 0x1000 + i * 16 + 8, 23, 0, false))
            .collect();
        symbols.push(symbol(0x1000, 0x1008, 30, 0, false));
        let table = table(symbols);
        assert_eq!(table.lookup(0x1004), Some((0x1000, "helper".to_owned())));
        // Many lookups release the pages on the way, and keep naming right.
        for i in 0..200 {
            assert_eq!(
                table.lookup(0x1000 + i * 16).map(|(s, _)| s),
                Some(0x1000 + i * 16)
            );
        }
    }
}
