//! C programs at -O2 -g: names, files and lines from DWARF, the symbol table after
//! `strip --strip-debug`, separate debug files via `.gnu_debuglink`, compressed DWARF, and
//! MiniDebugInfo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{compile, marker_line, nm_symbol, run, Scratch};
use rprof_symbolizer::{Bytes, Frame, ObjectInfo, Symbolizer};

const FUNCTIONS: [(&str, &str); 3] = [
    ("compute_sum", "MARK_COMPUTE_SUM"),
    ("scramble", "MARK_SCRAMBLE"),
    ("main", "MARK_MAIN"),
];

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/sample.c")
}

/// Builds sample.c at -O2 -g (plus `flags`) into the scratch directory.
fn build(scratch: &Scratch, name: &str, flags: &[&str]) -> PathBuf {
    let binary = scratch.path(name);
    let mut all = vec!["-O2", "-g"];
    all.extend_from_slice(flags);
    compile("gcc", &source(), &binary, &all);
    binary
}

fn load(path: &Path) -> Arc<ObjectInfo> {
    Symbolizer::new().load_file(path).expect("load binary")
}

/// The frame DWARF must give for the entry of a non-inlined function.
fn dwarf_frame(name: &str, marker: &str) -> Frame {
    Frame {
        function: Some(name.to_owned()),
        system_name: Some(name.to_owned()),
        file: Some(source().to_str().unwrap().to_owned()),
        line: Some(marker_line(&source(), marker)),
        inlined: false,
    }
}

fn symbol_frame(name: &str) -> Frame {
    Frame {
        function: Some(name.to_owned()),
        system_name: Some(name.to_owned()),
        file: None,
        line: None,
        inlined: false,
    }
}

#[test]
fn dwarf_gives_name_file_and_line() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "sample", &[]);
    let object = load(&binary);
    assert!(object.has_dwarf());
    assert!(object.has_symbols());
    assert!(!object.is_go());
    assert_eq!(
        object.build_id_hex().unwrap(),
        common::readelf_build_id(&binary)
    );
    for (name, marker) in FUNCTIONS {
        let (address, size) = nm_symbol(&binary, name);
        assert_eq!(
            object.symbolize(address),
            vec![dwarf_frame(name, marker)],
            "{name}"
        );
        // Inside the body: same function, and exactly what binutils' addr2line says.
        let inside = address + size / 2;
        let frames = object.symbolize(inside);
        let expected = common::binutils_addr2line(&binary, inside);
        let actual: Vec<_> = frames
            .iter()
            .map(|f| {
                (
                    f.function.clone().unwrap(),
                    f.file.clone().unwrap(),
                    f.line.unwrap(),
                )
            })
            .collect();
        assert_eq!(actual, expected, "{name} + {:#x}", size / 2);
        assert_eq!(frames.last().unwrap().function.as_deref(), Some(name));
    }
    // Outside any function: nothing.
    assert_eq!(object.symbolize(0x10), vec![]);
    assert_eq!(object.symbolize(u64::MAX), vec![]);
}

#[test]
fn repeated_lookups_are_cached_and_identical() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "sample", &[]);
    let object = load(&binary);
    let (address, _) = nm_symbol(&binary, "scramble");
    let first = object.symbolize(address);
    for _ in 0..1000 {
        assert_eq!(object.symbolize(address), first);
    }
}

#[test]
fn symtab_names_after_strip_debug() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "sample", &[]);
    let stripped = scratch.path("sample.nodebug");
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&binary)
        .arg(&stripped));
    let object = load(&stripped);
    assert!(!object.has_dwarf());
    assert!(object.has_symbols());
    for (name, _) in FUNCTIONS {
        let (address, size) = nm_symbol(&binary, name);
        assert_eq!(object.symbolize(address), vec![symbol_frame(name)]);
        assert_eq!(
            object.symbolize(address + size - 1),
            vec![symbol_frame(name)]
        );
    }
}

/// sample.c built, then split: see [`common::split_debug`].
fn split_debug(scratch: &Scratch, debug_dir: &str) -> (PathBuf, PathBuf, PathBuf) {
    let binary = build(scratch, "sample", &[]);
    let (stripped, debug) = common::split_debug(scratch, &binary, debug_dir);
    (binary, stripped, debug)
}

#[test]
fn debuglink_beside_the_binary() {
    let scratch = Scratch::new();
    let (binary, stripped, _) = split_debug(&scratch, "");
    let object = load(&stripped);
    assert!(object.debug_link().is_some());
    assert!(object.debug_file().is_some(), "debug file not found");
    assert!(object.has_dwarf());
    for (name, marker) in FUNCTIONS {
        let (address, _) = nm_symbol(&binary, name);
        assert_eq!(object.symbolize(address), vec![dwarf_frame(name, marker)]);
    }
}

#[test]
fn debuglink_in_dot_debug_directory() {
    let scratch = Scratch::new();
    let (binary, stripped, _) = split_debug(&scratch, ".debug");
    let object = load(&stripped);
    let (address, _) = nm_symbol(&binary, "scramble");
    assert_eq!(
        object.symbolize(address),
        vec![dwarf_frame("scramble", "MARK_SCRAMBLE")]
    );
}

#[test]
fn debuglink_with_wrong_crc_is_rejected() {
    let scratch = Scratch::new();
    let (binary, stripped, debug) = split_debug(&scratch, "");
    // Still a valid ELF file, but not the one the CRC names.
    let mut bytes = std::fs::read(&debug).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&debug, bytes).unwrap();
    let object = load(&stripped);
    assert!(object.debug_file().is_none());
    assert!(!object.has_dwarf());
    // `scramble` is static: only the (rejected) debug file knew its name. What is left is the
    // start of its function in the unwind tables, module-relative.
    let (address, _) = nm_symbol(&binary, "scramble");
    let file = stripped.file_name().unwrap().to_str().unwrap();
    let frames = object.symbolize(address);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        frames[0].function.as_deref(),
        Some(format!("{file}+{address:#x}").as_str())
    );
    assert_eq!((frames[0].file.as_deref(), frames[0].line), (None, None));
}

#[test]
fn compressed_dwarf() {
    let scratch = Scratch::new();
    // SHF_COMPRESSED sections from the compiler, and legacy `.zdebug_*` sections from objcopy.
    let shf_compressed = build(&scratch, "sample.gz", &["-gz=zlib"]);
    let zdebug = scratch.path("sample.zdebug");
    run(Command::new("objcopy")
        .arg("--compress-debug-sections=zlib-gnu")
        .arg(build(&scratch, "sample", &[]))
        .arg(&zdebug));
    let sections = run(Command::new("readelf").arg("-S").arg("-W").arg(&zdebug));
    assert!(sections.contains(".zdebug_info"), "{sections}");
    for binary in [shf_compressed, zdebug] {
        let object = load(&binary);
        assert!(object.has_dwarf(), "{}", binary.display());
        for (name, marker) in FUNCTIONS {
            let (address, _) = nm_symbol(&binary, name);
            assert_eq!(
                object.symbolize(address),
                vec![dwarf_frame(name, marker)],
                "{}",
                binary.display()
            );
        }
    }
}

#[test]
fn minidebuginfo_names_static_functions() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "sample", &[]);
    let stripped =
        common::with_minidebuginfo(&scratch, &binary, &["compute_sum", "scramble", "main"]);
    let object = load(&stripped);
    assert!(!object.has_dwarf());
    let sections = run(Command::new("readelf").arg("-SW").arg(&stripped));
    assert!(sections.contains(".gnu_debugdata") && !sections.contains(".symtab"));
    for (name, _) in FUNCTIONS {
        let (address, size) = nm_symbol(&binary, name);
        assert_eq!(
            object.symbolize(address + size / 2),
            vec![symbol_frame(name)]
        );
    }
}

#[test]
fn unwind_sections_of_a_c_binary() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "sample", &[]);
    let object =
        ObjectInfo::from_bytes("sample", Bytes::from_vec(std::fs::read(&binary).unwrap())).unwrap();
    let sections = object.unwind_sections();
    let headers = run(Command::new("readelf").arg("-S").arg("-W").arg(&binary));
    let section_addr = |name: &str| -> (u64, u64) {
        let line = headers
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{name} missing"));
        // [Nr] Name Type Address Off Size ...
        let fields: Vec<&str> = line.split(']').nth(1).unwrap().split_whitespace().collect();
        (
            u64::from_str_radix(fields[2], 16).unwrap(),
            u64::from_str_radix(fields[4], 16).unwrap(),
        )
    };
    let range = |name| {
        let (start, size) = section_addr(name);
        start..start + size
    };
    assert_eq!(sections.base_svma, 0);
    assert_eq!(sections.text_svma, Some(range(".text")));
    assert_eq!(sections.eh_frame_svma, Some(range(".eh_frame")));
    assert_eq!(sections.eh_frame_hdr_svma, Some(range(".eh_frame_hdr")));
    assert_eq!(sections.got_svma, Some(range(".got")));
    let text = sections.text.unwrap();
    assert_eq!(text.len() as u64, range(".text").end - range(".text").start);
    assert_eq!(
        sections.eh_frame.unwrap().len() as u64,
        section_addr(".eh_frame").1
    );
    // gcc on x86-64 emits .eh_frame, not .debug_frame.
    assert!(sections.debug_frame.is_none());
}

/// A program with over 1 MiB of `.debug_info` in several units: compressed, its units are
/// indexed in one pass and decompressed one at a time when looked up (`seekable_zlib.rs`).
/// Every sampled function must be named, with its file and line, exactly as from the same
/// program's uncompressed DWARF.
#[test]
fn big_compressed_dwarf_is_named_like_the_plain_one() {
    const UNITS: usize = 6;
    const FUNCTIONS_PER_UNIT: usize = 400;
    let scratch = Scratch::new();
    let mut sources = Vec::new();
    for unit in 0..UNITS {
        let mut text = String::from("#include <string.h>\n");
        for f in 0..FUNCTIONS_PER_UNIT {
            // A struct of its own per function: type DIEs make the DWARF big.
            text.push_str(&format!("struct s_{unit}_{f} {{"));
            for field in 0..32 {
                text.push_str(&format!(" long field_{field}_{f};"));
            }
            text.push_str(" };\n");
            text.push_str(&format!(
                "__attribute__((noinline)) long fn_{unit}_{f}(long x) {{\n  struct s_{unit}_{f} s;\n  memset(&s, (int)x, sizeof s);\n  return s.field_3_{f} + x * {f};\n}}\n"
            ));
        }
        if unit == 0 {
            text.push_str(
                "int main(int argc, char **argv) { (void)argv; return (int)fn_0_0(argc); }\n",
            );
        }
        sources.push(scratch.write(&format!("unit{unit}.c"), &text));
    }
    let link = |name: &str, flags: &[&str]| {
        let binary = scratch.path(name);
        run(Command::new("gcc")
            .args(["-O1", "-g"])
            .args(flags)
            .arg("-o")
            .arg(&binary)
            .args(&sources));
        binary
    };
    let plain = link("big", &[]);
    let compressed = link("big.gz", &["-gz=zlib"]);
    let sections = run(Command::new("readelf").arg("-SW").arg(&compressed));
    let info = sections
        .lines()
        .find(|line| line.contains(".debug_info"))
        .expect("a .debug_info section");
    assert!(info.contains(" C "), "not compressed: {info}");
    let plain_size = run(Command::new("readelf").arg("-SW").arg(&plain))
        .lines()
        .find(|line| line.contains(".debug_info"))
        .and_then(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "PROGBITS")?;
            u64::from_str_radix(fields.get(at + 3)?, 16).ok()
        })
        .expect("size of .debug_info");
    assert!(
        plain_size > 1 << 20,
        "only {plain_size} bytes of .debug_info"
    );

    let (plain_object, compressed_object) = (load(&plain), load(&compressed));
    let mut checked = 0;
    for unit in 0..UNITS {
        for f in (0..FUNCTIONS_PER_UNIT).step_by(23) {
            let name = format!("fn_{unit}_{f}");
            let (address, size) = nm_symbol(&compressed, &name);
            assert_eq!(nm_symbol(&plain, &name), (address, size), "same code");
            for at in [address, address + size / 2] {
                let frames = compressed_object.symbolize(at);
                assert_eq!(frames, plain_object.symbolize(at), "{name} at {at:#x}");
                let outer = frames.last().expect("frames");
                assert_eq!(outer.function.as_deref(), Some(name.as_str()));
                assert!(
                    outer
                        .file
                        .as_deref()
                        .is_some_and(|f| f.ends_with(&format!("unit{unit}.c"))),
                    "{outer:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 100, "{checked}");
}
