//! Names for kernel addresses, from /proc/kallsyms (readable with addresses only where
//! kptr_restrict and our privileges allow; otherwise kernel frames stay unnamed).

use std::io::{BufRead, BufReader};

/// More lines than any kernel has symbols: a bound for a file we don't control.
const MAX_SYMBOLS: usize = 4_000_000;

/// Kernel function symbols sorted by address.
pub struct KernelSymbols {
    symbols: Vec<(u64, String)>,
}

impl KernelSymbols {
    /// Reads /proc/kallsyms. None when it is unreadable or its addresses are hidden (all zero).
    pub fn load() -> Option<Self> {
        let file = std::fs::File::open("/proc/kallsyms").ok()?;
        Self::parse(BufReader::new(file))
    }

    pub fn parse(reader: impl BufRead) -> Option<Self> {
        let mut symbols: Vec<(u64, String)> = reader
            .lines()
            .take(MAX_SYMBOLS)
            .map_while(Result::ok)
            .filter_map(|line| text_symbol(&line).map(|(addr, name)| (addr, name.to_owned())))
            .collect();
        if symbols.is_empty() {
            return None;
        }
        symbols.sort_unstable_by_key(|(addr, _)| *addr);
        Some(KernelSymbols { symbols })
    }

    /// The function containing `addr`: the closest symbol at or below it.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let idx = self.symbols.partition_point(|(start, _)| *start <= addr);
        self.symbols
            .get(idx.checked_sub(1)?)
            .map(|(_, name)| name.as_str())
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
    fn hidden_addresses_mean_no_symbols() {
        let text = "0000000000000000 T _text\n0000000000000000 t helper\n";
        assert!(KernelSymbols::parse(text.as_bytes()).is_none());
    }
}
