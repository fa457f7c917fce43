//! Rust release binaries: legacy and v0 mangled names come back demangled, without hash.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{nm_text_symbols, run, Scratch};
use rprof_symbolizer::Symbolizer;

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/sample.rs")
}

fn build(scratch: &Scratch, name: &str, flags: &[&str]) -> PathBuf {
    let source = source();
    let binary = scratch.path(name);
    run(Command::new("rustc")
        .args(["--edition=2021", "--crate-name=sample", "-C", "opt-level=3"])
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(source));
    binary
}

/// The (mangled name, address, size) of the one text symbol whose name contains `part`.
fn find_symbol(binary: &Path, part: &str) -> (String, u64, u64) {
    let mut found: Vec<_> = nm_text_symbols(binary)
        .into_iter()
        .filter(|(name, _, _)| name.contains(part))
        .collect();
    assert_eq!(found.len(), 1, "symbols matching {part}: {found:?}");
    found.remove(0)
}

/// (mangled fragment, demangled name) of sample.rs's functions, per mangling scheme.
fn check(binary: &Path, expected: &[(&str, &str)], legacy: bool) {
    let object = Symbolizer::new().load_file(binary).unwrap();
    for &(part, demangled) in expected {
        let (mangled, address, size) = find_symbol(binary, part);
        if legacy {
            assert!(
                mangled.starts_with("_ZN") && mangled.contains("17h"),
                "{mangled}"
            );
        } else {
            assert!(mangled.starts_with("_R"), "{mangled}");
        }
        for probe in [address, address + size / 2] {
            let frames = object.symbolize(probe);
            let physical = frames.last().expect("unnamed");
            assert_eq!(physical.function.as_deref(), Some(demangled), "{mangled}");
            assert_eq!(physical.system_name.as_deref(), Some(mangled.as_str()));
        }
    }
}

#[test]
fn release_binary_symbol_table() {
    let scratch = Scratch::new();
    let binary = build(
        &scratch,
        "sample",
        &["-C", "debuginfo=0", "-C", "strip=debuginfo"],
    );
    let object = Symbolizer::new().load_file(&binary).unwrap();
    assert!(!object.has_dwarf());
    check(
        &binary,
        &[
            ("16compute_checksum", "sample::compute_checksum"),
            ("6absorb", "sample::nested::Accumulator::absorb"),
        ],
        true,
    );
}

#[test]
fn release_binary_with_dwarf() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "sample", &["-C", "debuginfo=2"]);
    let object = Symbolizer::new().load_file(&binary).unwrap();
    assert!(object.has_dwarf());
    check(
        &binary,
        &[
            ("16compute_checksum", "sample::compute_checksum"),
            ("6absorb", "sample::nested::Accumulator::absorb"),
        ],
        true,
    );
    // DWARF also gives the source file of the physical function.
    let (_, address, _) = find_symbol(&binary, "16compute_checksum");
    let frames = object.symbolize(address);
    assert_eq!(
        frames.last().unwrap().file.as_deref(),
        Some(source().to_str().unwrap())
    );
}

#[test]
fn v0_mangling() {
    let scratch = Scratch::new();
    let binary = build(
        &scratch,
        "sample",
        &["-C", "debuginfo=0", "-C", "symbol-mangling-version=v0"],
    );
    check(
        &binary,
        &[
            ("16compute_checksum", "sample::compute_checksum"),
            ("6absorb", "<sample::nested::Accumulator>::absorb"),
        ],
        false,
    );
}
