//! Conveniences for reading decoded profiles.

use crate::pb::Profile;

impl Profile {
    /// The string-table entry `index`; "" for an index out of range (a malformed profile reads
    /// as unnamed, never panics).
    pub fn string(&self, index: i64) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }
}
