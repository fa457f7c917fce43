//! Truncated and byte-flipped copies of real binaries: parsing, symbolization and unwind
//! section extraction must return errors or fewer names, never panic or hang.
//!
//! A panic hook counts every panic, including any that the library's last-resort
//! `catch_unwind` would hide, so the library's own code is held to "no panic" here.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use std::process::Command;

use common::{compile, nm_text_symbols, objdump_plt_stubs, run, Scratch};
use rprof_symbolizer::{Bytes, ObjectInfo};

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

fn count_panics() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// xorshift64*: reproducible corruption without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Real binaries exercising different parsers: plain DWARF, compressed DWARF (SHF_COMPRESSED
/// and `.zdebug`), C++ inlines, MiniDebugInfo (xz).
fn binaries(scratch: &Scratch) -> Vec<(PathBuf, Vec<u64>)> {
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let builds = [
        ("gcc", "sample.c", "plain", vec!["-O2", "-g"]),
        ("gcc", "sample.c", "gz", vec!["-O2", "-g", "-gz=zlib"]),
        ("g++", "inline.cpp", "cpp", vec!["-O2", "-g"]),
    ];
    let mut built: Vec<PathBuf> = builds
        .into_iter()
        .map(|(compiler, source, name, flags)| {
            let binary = scratch.path(name);
            compile(compiler, &programs.join(source), &binary, &flags);
            binary
        })
        .collect();
    let plain = built[0].clone();
    let zdebug = scratch.path("zdebug");
    run(Command::new("objcopy")
        .arg("--compress-debug-sections=zlib-gnu")
        .arg(&plain)
        .arg(&zdebug));
    built.push(zdebug);
    built.push(common::with_minidebuginfo(
        scratch,
        &plain,
        &["compute_sum", "scramble", "main"],
    ));
    // Addresses from the unstripped build: the stripped ones have no symbols for nm to list.
    // PLT stubs too: their names come from relocations, a parser of its own.
    let addresses: Vec<u64> = nm_text_symbols(&plain)
        .into_iter()
        .flat_map(|(_, address, size)| [address, address + size / 2])
        .chain(
            objdump_plt_stubs(&plain)
                .into_iter()
                .map(|(_, address)| address),
        )
        .collect();
    built
        .into_iter()
        .map(|binary| {
            let mut all = addresses.clone();
            if binary.file_name().unwrap() == "cpp" {
                all = nm_text_symbols(&binary)
                    .into_iter()
                    .flat_map(|(_, address, size)| [address, address + size / 2])
                    .collect();
            }
            (binary, all)
        })
        .collect()
}

/// Everything a caller may do with an object.
fn exercise(name: &str, data: Vec<u8>, addresses: &[u64]) {
    let Ok(object) = ObjectInfo::from_bytes(name, Bytes::from_vec(data)) else {
        return;
    };
    let _ = (object.build_id(), object.go_build_id(), object.is_go());
    let _ = (object.has_dwarf(), object.has_symbols());
    let sections = object.unwind_sections();
    let _ = sections.text.map(|t| t.len());
    for &address in addresses {
        for frame in object.symbolize(address) {
            let _ = (frame.function, frame.file, frame.line);
        }
    }
    let _ = object.symbolize(0);
    let _ = object.symbolize(u64::MAX);
    let _ = object.load_bias(0x1000, 0x5555_0000_1000, true);
}

#[test]
fn flipped_bytes() {
    count_panics();
    let scratch = Scratch::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    for (binary, addresses) in binaries(&scratch) {
        let original = std::fs::read(&binary).unwrap();
        for seed in 1..=400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut data = original.clone();
            let flips = 1 + rng.below(64);
            for _ in 0..flips {
                let at = rng.below(data.len());
                data[at] = rng.next() as u8;
            }
            exercise(
                &format!("{} seed {seed}", binary.display()),
                data,
                &addresses,
            );
            assert!(
                Instant::now() < deadline,
                "corrupted input made symbolization hang"
            );
        }
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "panics on corrupted input"
    );
}

#[test]
fn flipped_header_bytes() {
    // Headers (ELF, program and section headers, notes) concentrate the offsets and sizes a
    // parser trusts; corrupt only the first and last KiB, where they live for gcc output.
    count_panics();
    let scratch = Scratch::new();
    for (binary, addresses) in binaries(&scratch) {
        let original = std::fs::read(&binary).unwrap();
        let len = original.len();
        for seed in 1..=400u64 {
            let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03));
            let mut data = original.clone();
            for _ in 0..1 + rng.below(8) {
                let offset = rng.below(1024);
                let at = if rng.next().is_multiple_of(2) {
                    offset
                } else {
                    len - 1 - offset
                };
                data[at] = rng.next() as u8;
            }
            exercise(
                &format!("{} header seed {seed}", binary.display()),
                data,
                &addresses,
            );
        }
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "panics on corrupted headers"
    );
}

#[test]
fn truncated() {
    count_panics();
    let scratch = Scratch::new();
    for (binary, addresses) in binaries(&scratch) {
        let original = std::fs::read(&binary).unwrap();
        let step = (original.len() / 300).max(1);
        for len in (0..original.len())
            .step_by(step)
            .chain([1, 4, 16, 63, 64, 65])
        {
            exercise(
                &format!("{} truncated to {len}", binary.display()),
                original[..len].to_vec(),
                &addresses,
            );
        }
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "panics on truncated input"
    );
}
