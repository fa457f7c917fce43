//! The profile's string table.

use std::collections::HashMap;

/// Interns strings into pprof's `string_table`, whose entry 0 must be "".
#[derive(Debug, Clone)]
pub struct StringTable {
    strings: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for StringTable {
    fn default() -> Self {
        Self::new()
    }
}

impl StringTable {
    pub fn new() -> Self {
        let mut table = Self {
            strings: Vec::new(),
            index: HashMap::new(),
        };
        table.intern("");
        table
    }

    /// Returns the index of `s`, adding it on first use.
    pub fn intern(&mut self, s: &str) -> i64 {
        if let Some(&index) = self.index.get(s) {
            return index;
        }
        let index =
            i64::try_from(self.strings.len()).expect("string table exceeds i64::MAX entries");
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), index);
        index
    }

    pub fn into_vec(self) -> Vec<String> {
        self.strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_string_is_entry_zero_and_strings_dedup() {
        let mut table = StringTable::new();
        assert_eq!(table.intern(""), 0);
        assert_eq!(table.intern("main"), 1);
        assert_eq!(table.intern("libc.so.6"), 2);
        assert_eq!(table.intern("main"), 1);
        assert_eq!(table.into_vec(), ["", "main", "libc.so.6"]);
    }
}
