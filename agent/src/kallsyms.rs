//! Names for kernel addresses, from /proc/kallsyms (readable with addresses only where
//! kptr_restrict and our privileges allow; otherwise kernel frames stay unnamed).

use std::io::{BufRead, BufReader};

/// More lines than any kernel has symbols: a bound for a file we don't control.
const MAX_SYMBOLS: usize = 4_000_000;

/// Kernel function symbols sorted by address. Names share one buffer: a kernel has ~100 000
/// text symbols, and a `String` each would cost more than the names themselves.
pub struct KernelSymbols {
    /// (address, end of the name in `names`); a name starts where the previous one ends.
    symbols: Vec<(u64, u32)>,
    names: String,
}

impl KernelSymbols {
    /// The symbols that name `addresses` (sorted), from /proc/kallsyms: the closest symbol at
    /// or below each. None when it is unreadable or its addresses are hidden (all zero).
    ///
    /// The file is read twice, for the symbols' addresses and then for the few names needed,
    /// so that a profile's handful of kernel frames does not cost the kernel's whole table
    /// (~100 000 names, megabytes) at the moment the profile is symbolized.
    pub fn load_for(addresses: &[u64]) -> Option<Self> {
        if addresses.is_empty() {
            return None;
        }
        let open = || {
            std::fs::File::open("/proc/kallsyms")
                .ok()
                .map(BufReader::new)
        };
        Self::select(open()?, open()?, addresses)
    }

    /// [`KernelSymbols::load_for`] over two readers of the same table.
    fn select(first: impl BufRead, second: impl BufRead, addresses: &[u64]) -> Option<Self> {
        let mut starts: Vec<u64> = text_symbols(first).map(|(addr, _)| addr).collect();
        if starts.is_empty() {
            return None;
        }
        starts.sort_unstable();
        starts.dedup();
        let mut wanted: Vec<u64> = addresses
            .iter()
            .filter_map(|&addr| {
                let below = starts.partition_point(|&start| start <= addr);
                starts.get(below.checked_sub(1)?).copied()
            })
            .collect();
        drop(starts);
        wanted.sort_unstable();
        wanted.dedup();
        let mut symbols = KernelSymbols {
            symbols: Vec::with_capacity(wanted.len()),
            names: String::new(),
        };
        let mut named = vec![false; wanted.len()];
        for (addr, name) in text_symbols(second) {
            let Ok(at) = wanted.binary_search(&addr) else {
                continue;
            };
            if std::mem::replace(&mut named[at], true) {
                continue;
            }
            symbols.push(addr, &name);
        }
        // A symbol gone between the two reads (a module unloaded) still bounds the one before
        // it: kept without a name, so that its addresses are not given its neighbour's.
        for (&addr, _) in wanted.iter().zip(&named).filter(|(_, &named)| !named) {
            symbols.push(addr, "");
        }
        if !symbols.symbols.is_sorted_by_key(|&(addr, _)| addr) {
            symbols = symbols.sorted();
        }
        Some(symbols)
    }

    fn push(&mut self, addr: u64, name: &str) -> bool {
        self.names.push_str(name);
        let Ok(end) = u32::try_from(self.names.len()) else {
            return false;
        };
        self.symbols.push((addr, end));
        true
    }

    /// Every text symbol of a kallsyms table (`--kernel` over everything; tests).
    #[cfg(test)]
    pub fn parse(reader: impl BufRead) -> Option<Self> {
        let mut symbols = KernelSymbols {
            symbols: Vec::new(),
            names: String::new(),
        };
        for (addr, name) in text_symbols(reader) {
            if !symbols.push(addr, &name) {
                break;
            }
        }
        if symbols.symbols.is_empty() {
            return None;
        }
        if !symbols.symbols.is_sorted_by_key(|&(addr, _)| addr) {
            symbols = symbols.sorted();
        }
        Some(symbols)
    }

    /// The same symbols laid out in address order (the core kernel's come sorted; modules'
    /// may not).
    fn sorted(self) -> Self {
        let mut order: Vec<usize> = (0..self.symbols.len()).collect();
        order.sort_by_key(|&i| self.symbols[i].0);
        let mut sorted = KernelSymbols {
            symbols: Vec::with_capacity(self.symbols.len()),
            names: String::with_capacity(self.names.len()),
        };
        for i in order {
            let name = self.name_at(i).unwrap_or_default();
            sorted.names.push_str(name);
            let end = u32::try_from(sorted.names.len()).unwrap_or(u32::MAX);
            sorted.symbols.push((self.symbols[i].0, end));
        }
        sorted
    }

    /// The name of the `index`th symbol: from the previous one's end to its own.
    fn name_at(&self, index: usize) -> Option<&str> {
        let end = self.symbols.get(index)?.1 as usize;
        let start = index
            .checked_sub(1)
            .and_then(|previous| self.symbols.get(previous))
            .map_or(0, |&(_, end)| end as usize);
        self.names.get(start..end)
    }

    /// The function containing `addr`: the closest symbol at or below it (of those loaded:
    /// right for the addresses given to [`KernelSymbols::load_for`]).
    pub fn name(&self, addr: u64) -> Option<&str> {
        let idx = self.symbols.partition_point(|(start, _)| *start <= addr);
        self.name_at(idx.checked_sub(1)?)
            .filter(|name| !name.is_empty())
    }
}

/// How a profile names its kernel frames.
pub enum KernelNames {
    /// Every frame by its function (`--kernel`).
    Functions(KernelSymbols),
    /// One frame a stack, collapsed by [`crate::kernel_entry::KernelEntries::collapse`]:
    /// named after the syscall or entry it stands for (symbols may be unreadable).
    Entries(Option<KernelSymbols>),
}

impl KernelNames {
    pub fn name(&self, addr: u64) -> Option<String> {
        match self {
            KernelNames::Functions(symbols) => symbols.name(addr).map(str::to_owned),
            KernelNames::Entries(symbols) => Some(crate::kernel_entry::entry_name(
                symbols.as_ref().and_then(|s| s.name(addr)),
            )),
        }
    }
}

/// The text symbols of a kallsyms table, in file order, at most [`MAX_SYMBOLS`] lines read.
fn text_symbols(reader: impl BufRead) -> impl Iterator<Item = (u64, String)> {
    reader
        .lines()
        .take(MAX_SYMBOLS)
        .map_while(Result::ok)
        .filter_map(|line| text_symbol(&line).map(|(addr, name)| (addr, name.to_owned())))
}

/// "ffffffff81000000 T _text [module]": text symbols only, address must be visible (non-zero).
pub(crate) fn text_symbol(line: &str) -> Option<(u64, &str)> {
    let mut fields = line.split_whitespace();
    let addr = u64::from_str_radix(fields.next()?, 16)
        .ok()
        .filter(|&a| a != 0)?;
    let kind = fields.next()?;
    if !matches!(kind, "T" | "t") {
        return None;
    }
    Some((addr, fields.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enclosing_text_symbol() {
        let text =
            "ffffffff81000000 T _text\nffffffff81000100 t helper\nffffffff81000200 D data\nzzz\n";
        let syms = KernelSymbols::parse(text.as_bytes()).expect("symbols");
        assert_eq!(syms.name(0xffff_ffff_8100_0150), Some("helper"));
        assert_eq!(syms.name(0xffff_ffff_8100_0000), Some("_text"));
        assert_eq!(syms.name(0x10), None);
    }

    #[test]
    fn symbols_out_of_order_are_sorted_with_their_names() {
        let text = "ffffffffc0000100 t mod_b\nffffffff81000000 T core\nffffffffc0000000 t mod_a\n";
        let syms = KernelSymbols::parse(text.as_bytes()).expect("symbols");
        assert_eq!(syms.name(0xffff_ffff_8100_0010), Some("core"));
        assert_eq!(syms.name(0xffff_ffff_c000_0010), Some("mod_a"));
        assert_eq!(syms.name(0xffff_ffff_c000_0110), Some("mod_b"));
    }

    #[test]
    fn only_the_symbols_of_the_given_addresses_are_kept() {
        let text =
            "ffffffff81000000 T _text\nffffffff81000100 t helper\nffffffff81000200 T other\n\
                    ffffffff81000300 T last\n";
        let syms = KernelSymbols::select(
            text.as_bytes(),
            text.as_bytes(),
            &[0xffff_ffff_8100_0150, 0xffff_ffff_8100_0310],
        )
        .expect("symbols");
        assert_eq!(syms.name(0xffff_ffff_8100_0150), Some("helper"));
        assert_eq!(syms.name(0xffff_ffff_8100_0310), Some("last"));
        assert_eq!(syms.symbols.len(), 2);
        assert_eq!(syms.names, "helperlast");
        // A symbol missing from the second read is not named after its neighbour.
        let second = "ffffffff81000000 T _text\nffffffff81000300 T last\n";
        let syms =
            KernelSymbols::select(text.as_bytes(), second.as_bytes(), &[0xffff_ffff_8100_0150])
                .expect("symbols");
        assert_eq!(syms.name(0xffff_ffff_8100_0150), None);
        let hidden = "0000000000000000 T _text\n";
        assert!(KernelSymbols::select(hidden.as_bytes(), hidden.as_bytes(), &[1]).is_none());
    }

    #[test]
    fn hidden_addresses_mean_no_symbols() {
        let text = "0000000000000000 T _text\n0000000000000000 t helper\n";
        assert!(KernelSymbols::parse(text.as_bytes()).is_none());
    }
}
