//! Turning linkage names into the names people wrote.

use std::fmt::Write;

/// Names longer than this are left mangled: real ones are far shorter, and the demanglers'
/// work grows with the input.
const MAX_DEMANGLE_LEN: usize = 4096;
/// Bound on a demangled name, whatever the input claims.
const MAX_DEMANGLED_LEN: usize = 16 * 1024;

/// Demangles a Rust (legacy `_ZN...17h<hash>E` or v0 `_R`) or C++ (`_Z`) name, without the Rust
/// hash; other names (C, Go, already demangled names) come back unchanged. For names from
/// symbol tables and JIT perf maps.
pub fn demangle(raw: &str) -> String {
    demangle_as(raw, None)
}

/// [`demangle`], with the DWARF unit's language when known; without it, the name's shape
/// decides.
pub(crate) fn demangle_as(raw: &str, language: Option<gimli::DwLang>) -> String {
    if raw.len() > MAX_DEMANGLE_LEN {
        return raw.to_owned();
    }
    let rust_first = match language {
        Some(gimli::DW_LANG_Rust) => true,
        Some(_) => false,
        None => looks_like_rust(raw),
    };
    let demangled = if rust_first {
        demangle_rust(raw).or_else(|| demangle_cpp(raw))
    } else {
        demangle_cpp(raw).or_else(|| demangle_rust(raw))
    };
    demangled.unwrap_or_else(|| raw.to_owned())
}

/// Legacy Rust symbols are valid Itanium C++ names too; what sets them apart is the trailing
/// `17h<16 hex digits>E` hash (possibly followed by an LLVM `.llvm.NNN` suffix).
fn looks_like_rust(raw: &str) -> bool {
    if raw.starts_with("_R") {
        return true;
    }
    let base = raw.split('.').next().unwrap_or(raw);
    base.starts_with("_ZN")
        && base
            .strip_suffix('E')
            .and_then(|rest| rest.get(rest.len().checked_sub(19)?..))
            .and_then(|hash| hash.strip_prefix("17h"))
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn demangle_rust(raw: &str) -> Option<String> {
    let demangled = rustc_demangle::try_demangle(raw).ok()?;
    let mut out = BoundedString::default();
    // `{:#}` omits the hash.
    write!(out, "{demangled:#}").ok()?;
    Some(out.0)
}

fn demangle_cpp(raw: &str) -> Option<String> {
    if !raw.starts_with("_Z") {
        return None;
    }
    let symbol = cpp_demangle::Symbol::new(raw).ok()?;
    let options = cpp_demangle::DemangleOptions::new().recursion_limit(128);
    let mut out = BoundedString::default();
    symbol.structured_demangle(&mut out, &options).ok()?;
    Some(without_empty_packs(without_clone_suffixes(&out.0)))
}

/// `f() [clone .isra.0] [clone .cold]` -> `f()`. GCC and LLVM name the parts and copies they
/// make of a function (`.cold`, `.isra.0`, `.constprop.0`, `.llvm.<hash>`, `.part.0`) after
/// it, and a person profiling wants them counted as that function (their addresses stay
/// their own).
fn without_clone_suffixes(name: &str) -> &str {
    let mut name = name;
    while let Some(stripped) = name.strip_suffix(']') {
        match stripped.rfind(" [clone .") {
            Some(start) => name = &name[..start],
            None => break,
        }
    }
    name
}

/// `A<B, >` -> `A<B>`, `f<, int>` -> `f<int>`: cpp_demangle prints a separator for each
/// template argument, including an empty pack (`J E`), where c++filt prints nothing.
fn without_empty_packs(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find(", ") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let after_separator = &after[2..];
        // `operator,` is a name, not a separator before an empty argument.
        let empty_argument = !out.ends_with("operator")
            && (after_separator.starts_with('>') || after_separator.starts_with(", "));
        let empty_first = out.ends_with('<') && !out.ends_with("operator<");
        if !empty_argument && !empty_first {
            out.push_str(", ");
        }
        rest = after_separator;
    }
    out.push_str(rest);
    out
}

/// A `fmt::Write` sink that fails instead of growing past [`MAX_DEMANGLED_LEN`]: some mangled
/// names (back-references to back-references) expand exponentially.
#[derive(Default)]
struct BoundedString(String);

impl Write for BoundedString {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len().saturating_add(s.len()) > MAX_DEMANGLED_LEN {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_legacy_and_v0_lose_their_hash() {
        assert_eq!(
            demangle("_ZN4core9panicking5panic17h0123456789abcdefE"),
            "core::panicking::panic"
        );
        assert_eq!(
            demangle("_ZN3foo3bar17h0123456789abcdefE.llvm.1234"),
            "foo::bar"
        );
        assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
    }

    #[test]
    fn cpp_and_plain_names() {
        assert_eq!(
            demangle("_ZN2ns6Widget7computeEi"),
            "ns::Widget::compute(int)"
        );
        assert_eq!(
            demangle_as("_ZN2ns6Widget7computeEi", Some(gimli::DW_LANG_C_plus_plus)),
            "ns::Widget::compute(int)"
        );
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("runtime.mallocgc"), "runtime.mallocgc");
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    }

    #[test]
    fn cpp_names_as_cpp_filt_prints_them_without_clones() {
        let manager = "llvm::AnalysisManager<llvm::Function>::clear()";
        assert_eq!(
            demangle("_ZN4llvm15AnalysisManagerINS_8FunctionEJEE5clearEv"),
            manager
        );
        assert_eq!(
            demangle(
                "_ZN4llvm15AnalysisManagerINS_8FunctionEJEE5clearEv.llvm.15853751787893754531"
            ),
            manager
        );
        assert_eq!(
            demangle("_ZN4llvm15AnalysisManagerINS_8FunctionEJEE5clearEv.llvm.1.cold"),
            manager
        );
        assert_eq!(demangle("_Z1fIiJEJEEvv"), "void f<int>()");
        assert_eq!(demangle("_Z1fIJEiEvv"), "void f<int>()");
        assert_eq!(demangle("_Z3barv.isra.0"), "bar()");
        assert_eq!(demangle("_Z3fooIJEEvv"), "void foo<>()");
        assert_eq!(demangle("_Z1fIiiEvv"), "void f<int, int>()");
        assert_eq!(demangle("_ZN1AcmES_"), "A::operator,(A)");
    }
}
