//! What callers hand to [`ProfileBuilder`](crate::ProfileBuilder): plain
//! descriptions with borrowed strings, interned by the builder.

/// A binary or library mapped into the target, i.e. one pprof `Mapping`.
///
/// The `has_*` flags must say honestly what the locations of this mapping
/// carry: `go tool pprof` tries to symbolize (and may POST to
/// `/debug/pprof/symbol`) whatever a mapping claims not to have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MappingSpec<'a> {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    /// Path as the target's `/proc/PID/maps` shows it, or e.g. `[vdso]`.
    pub filename: &'a str,
    /// GNU build-id in lowercase hex, or "" when the file has none.
    pub build_id: &'a str,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

/// A function, i.e. one pprof `Function`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FunctionSpec<'a> {
    /// Demangled, human-readable name.
    pub name: &'a str,
    /// Name as found in the symbol table (mangled), or "" if the same.
    pub system_name: &'a str,
    /// Source file, or "" when unknown.
    pub filename: &'a str,
    /// First line of the function in `filename`, or 0 when unknown.
    pub start_line: i64,
}

/// A source position inside a function, i.e. one pprof `Line`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LineSpec<'a> {
    pub function: FunctionSpec<'a>,
    /// Line number, or 0 when unknown.
    pub line: i64,
    /// Column number, or 0 when unknown.
    pub column: i64,
}

/// A sample label: a string, or a number with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelSpec<'a> {
    Str {
        key: &'a str,
        value: &'a str,
    },
    /// `unit` must not be empty: pprof silently drops a unit-less numeric
    /// label whose value is 0 (e.g. thread 0, CPU 0).
    Num {
        key: &'a str,
        value: i64,
        unit: &'a str,
    },
}

impl<'a> LabelSpec<'a> {
    pub fn str(key: &'a str, value: &'a str) -> Self {
        Self::Str { key, value }
    }

    pub fn num(key: &'a str, value: i64, unit: &'a str) -> Self {
        Self::Num { key, value, unit }
    }
}
