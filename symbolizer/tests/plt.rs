//! PLT stubs: no symbol table covers them, so they are named after the symbol they call
//! (`strtol@plt`, as perf and objdump do), with and without IBT (`.plt.sec`), and for
//! `.plt.got`. objdump's own `<name@plt>` labels are the oracle.

mod common;

use std::path::{Path, PathBuf};

use common::{compile, objdump_plt_stubs, Scratch};
use rprof_symbolizer::{Frame, Symbolizer};

/// Calls libc through the PLT (`strtol`, `printf`, `strlen`), one of them also through a
/// function pointer.
const SOURCE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
long (*volatile convert)(const char *, char **, int) = strtol;
int main(int argc, char **argv) {
    long value = strtol(argc > 1 ? argv[1] : "42", NULL, 10);
    value += convert("7", NULL, 10);
    printf("%ld %zu\n", value, strlen(argv[0]));
    return 0;
}
"#;

fn build(scratch: &Scratch, name: &str, flags: &[&str]) -> PathBuf {
    let source = scratch.write("plt.c", SOURCE);
    let binary = scratch.path(name);
    let mut all = vec!["-O2", "-g"];
    all.extend_from_slice(flags);
    compile("gcc", &source, &binary, &all);
    binary
}

fn plt_frame(name: &str) -> Frame {
    Frame {
        function: Some(name.to_owned()),
        system_name: Some(name.to_owned()),
        ..Frame::default()
    }
}

/// Every stub objdump names is named the same by us, at its start and in its middle.
fn check_stubs(binary: &Path, must_have: &str) {
    let object = Symbolizer::new().load_file(binary).expect("load binary");
    let stubs = objdump_plt_stubs(binary);
    assert!(
        stubs.iter().any(|(name, _)| name == must_have),
        "objdump lists no {must_have}: {stubs:?}"
    );
    for (name, address) in &stubs {
        assert_eq!(object.symbolize(*address), vec![plt_frame(name)], "{name}");
        assert_eq!(
            object.symbolize(address + 5),
            vec![plt_frame(name)],
            "{name}+5"
        );
    }
}

#[test]
fn ibt_plt_sec_stubs_are_named() {
    let scratch = Scratch::new();
    // `-z ibtplt`: Debian's crt files lack the IBT property, so -fcf-protection alone does
    // not get the linker to emit `.plt.sec`.
    let binary = build(&scratch, "ibt", &["-fcf-protection=full", "-Wl,-z,ibtplt"]);
    check_stubs(&binary, "strtol@plt");
    // The lazy-binding halves in `.plt` (`push index; jmp PLT0`, no GOT reference, no objdump
    // label): stub i of `.plt.sec` pairs with entry i + 1 of `.plt`.
    let object = Symbolizer::new().load_file(&binary).expect("load binary");
    let plt = section_address(&binary, ".plt");
    let plt_sec = section_address(&binary, ".plt.sec");
    let (_, strtol) = objdump_plt_stubs(&binary)
        .into_iter()
        .find(|(name, _)| name == "strtol@plt")
        .unwrap();
    let index = (strtol - plt_sec) / 16;
    assert_eq!(
        object.symbolize(plt + 16 * (index + 1)),
        vec![plt_frame("strtol@plt")]
    );
    assert_eq!(object.symbolize(plt), vec![plt_frame("[plt]")]);
}

#[test]
fn plain_plt_stubs_are_named() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "plain", &["-fcf-protection=none"]);
    check_stubs(&binary, "strtol@plt");
    // PLT0, the lazy-binding trampoline at the start of `.plt`, calls no one symbol.
    let object = Symbolizer::new().load_file(&binary).expect("load binary");
    let plt0 = section_address(&binary, ".plt");
    assert_eq!(object.symbolize(plt0), vec![plt_frame("[plt]")]);
}

#[test]
fn plt_got_stubs_are_named() {
    let scratch = Scratch::new();
    // `__cxa_finalize` (weak, address taken by crtstuff) always goes through `.plt.got`:
    // 16-byte entries with IBT, 8-byte ones without.
    for (name, ibt) in [
        ("got-ibt", "-Wl,-z,ibtplt"),
        ("got", "-fcf-protection=none"),
    ] {
        let binary = build(&scratch, name, &[ibt, "-Wl,-z,now"]);
        section_address(&binary, ".plt.got");
        check_stubs(&binary, "__cxa_finalize@plt");
    }
}

/// A section's address, from `readelf -S --wide`.
fn section_address(binary: &Path, section: &str) -> u64 {
    let out = common::run(
        std::process::Command::new("readelf")
            .args(["-S", "--wide"])
            .arg(binary),
    );
    out.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line
                .trim_start_matches(|c: char| {
                    c == ' ' || c == '[' || c.is_ascii_digit() || c == ']'
                })
                .split_whitespace()
                .collect();
            match fields.as_slice() {
                [name, _kind, address, ..] if *name == section => {
                    u64::from_str_radix(address, 16).ok()
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no {section} in {out}"))
}
