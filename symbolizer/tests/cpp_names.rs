//! C++ names as a C++ user reads them (and as c++filt prints them): no separator left by an
//! empty template parameter pack, and GCC's clones (`.isra.0`, `.cold`...) named after the
//! function they were made from, from DWARF and from the symbol table alike.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, nm_symbol, run, Scratch};
use rprof_symbolizer::Symbolizer;

const CLONE: &str = "_ZN15AnalysisManagerI8FunctionJEE3runEPS0_.isra.0";
const NAME: &str = "AnalysisManager<Function>::run(Function*)";

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/templates.cpp")
}

/// The function names `binary` gives the first and last address of `symbol`.
fn names(binary: &Path, symbol: &str) -> Vec<Option<String>> {
    let (address, size) = nm_symbol(binary, symbol);
    let object = Symbolizer::new().load_file(binary).unwrap();
    [address, address + size - 1]
        .iter()
        .map(|&a| object.symbolize(a).last().and_then(|f| f.function.clone()))
        .collect()
}

#[test]
fn empty_packs_and_clones_from_dwarf_and_symbols() {
    let scratch = Scratch::new();
    let binary = scratch.path("templates");
    compile("g++", &source(), &binary, &["-O2", "-g"]);
    let stripped = scratch.path("templates.nodebug");
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(&binary));
    let expected = vec![Some(NAME.to_owned()); 2];
    assert_eq!(names(&binary, CLONE), expected, "from DWARF");
    assert_eq!(names(&stripped, CLONE), expected, "from .symtab");
    // The raw name keeps the clone: the address is the clone's own.
    let object = Symbolizer::new().load_file(&stripped).unwrap();
    let (address, _) = nm_symbol(&stripped, CLONE);
    assert_eq!(
        object.symbolize(address)[0].system_name.as_deref(),
        Some(CLONE)
    );
}
