//! [`Frame`]: what an address means in source terms.

/// One frame of symbolized code. For an address inside inlined code, symbolization returns
/// several: the innermost (inlined callee) first, the physical (containing) function last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Frame {
    /// Demangled name, without the Rust hash suffix.
    pub function: Option<String>,
    /// The raw (mangled) linkage name.
    pub system_name: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// This frame was inlined into the next one.
    pub inlined: bool,
}

impl Frame {
    /// A frame named after a raw (possibly mangled) symbol name.
    pub(crate) fn from_symbol(raw: &str, language: Option<gimli::DwLang>) -> Frame {
        Frame {
            function: Some(crate::demangle::demangle_as(raw, language)),
            system_name: Some(raw.to_owned()),
            ..Frame::default()
        }
    }
}
