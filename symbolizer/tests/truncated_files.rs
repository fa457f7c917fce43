//! Files the target controls can be truncated while the agent has them mapped (a library in
//! the target's root, a debug file beside it): reading them must cost names, never the agent
//! (a read past the end of a mapped file faults with SIGBUS).

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use common::{compile, nm_symbol, Scratch};
use rprof_symbolizer::Symbolizer;

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/sample.c")
}

/// sample.c at -O2 -g, stripped, with its DWARF in `sample.debug` beside it (debuglink).
fn split_debug(scratch: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let binary = scratch.path("sample");
    compile("gcc", &source(), &binary, &["-O2", "-g"]);
    let (stripped, debug) = common::split_debug(scratch, &binary, "");
    (binary, stripped, debug)
}

/// Cuts `path` to its first page, in place (same inode: what a mapping of it sees).
fn truncate(path: &Path) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(4096).unwrap();
}

#[test]
fn debug_file_truncated_after_loading_costs_names_only() {
    let scratch = Scratch::new();
    let (binary, stripped, debug) = split_debug(&scratch);
    let symbolizer = Symbolizer::new();
    let object = symbolizer.load_file(&stripped).unwrap();
    assert!(object.debug_file().is_some(), "debug file not found");
    let (address, _) = nm_symbol(&binary, "scramble");

    truncate(&debug);
    // DWARF and the debug file's symbol table are read now, from a file cut short.
    let frames = object.symbolize(address);
    assert!(
        frames
            .iter()
            .all(|f| f.function.as_deref() != Some("compute_sum")),
        "{frames:?}"
    );
    let _ = object.unwind_sections();
    // Still alive, and still naming from files that are whole (a new cache: this one knows
    // the binary's build id, with the debug file cut short).
    let (main, _) = nm_symbol(&binary, "main");
    let intact = Symbolizer::new().load_file(&binary).unwrap();
    assert_eq!(intact.symbolize(main)[0].function.as_deref(), Some("main"));
}

#[test]
fn binary_truncated_after_loading_costs_names_only() {
    let scratch = Scratch::new();
    let (binary, _, _) = split_debug(&scratch);
    let copy = scratch.path("copy");
    std::fs::copy(&binary, &copy).unwrap();
    let object = Symbolizer::new().load_file(&copy).unwrap();
    let (address, _) = nm_symbol(&binary, "scramble");

    truncate(&copy);
    let _ = object.unwind_sections();
    let _ = object.symbolize(address);
    let _ = object.has_symbols();
}
