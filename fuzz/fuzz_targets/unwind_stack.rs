//! framehop over this process's own modules (its binary, libc, vdso: real unwind tables) with
//! registers and stack bytes from the input. Must never panic or loop forever: every unwind
//! ends, complete or truncated, within `MAX_FRAMES`.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use rprof_agent::unwind::{ModuleSet, Registers, StackMemory, StackUnwinder, MAX_FRAMES};
use rprof_symbolizer::Symbolizer;

/// Executable ranges of the modules, to aim the instruction pointer at real code.
struct Setup {
    unwinder: Mutex<StackUnwinder>,
    code: Vec<std::ops::Range<u64>>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let modules = ModuleSet::load(std::process::id(), Arc::new(Symbolizer::new()))
            .expect("reading this process's own modules");
        let code = modules
            .all()
            .iter()
            .flat_map(|m| m.exec_avma.iter().cloned())
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>();
        assert!(!code.is_empty(), "no executable modules in this process");
        Setup {
            unwinder: Mutex::new(StackUnwinder::new(modules)),
            code,
        }
    })
}

fn word(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(src) = data.get(at..) {
        let n = src.len().min(8);
        bytes[..n].copy_from_slice(&src[..n]);
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    // Layout: mode byte, ip seed, sp, bp, then the stack copy.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (ip_seed, sp, bp) = (word(rest, 0), word(rest, 8), word(rest, 16));
    let stack = rest.get(24..).unwrap_or_default();
    let ip = if mode & 1 == 0 {
        // Inside real code, where the unwind tables have something to say.
        let range = &setup.code[usize::from(mode >> 1) % setup.code.len()];
        range.start + ip_seed % (range.end - range.start)
    } else {
        ip_seed
    };
    // Point the frame pointer into the copy now and then, so frame-pointer walks get far.
    let bp = if mode & 2 == 0 {
        bp
    } else {
        sp.wrapping_add(bp % 4096)
    };
    let mut out = Vec::new();
    let mut unwinder = setup.unwinder.lock().unwrap_or_else(|e| e.into_inner());
    let _ = unwinder.unwind(
        Registers { ip, sp, bp },
        &StackMemory::new(sp, stack),
        &mut out,
    );
    assert!(out.len() <= MAX_FRAMES);
});
