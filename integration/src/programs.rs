//! The test programs, each built the way its claim needs (see the comment atop each source).

use std::path::PathBuf;

use crate::toolchain::{build_c, build_cpp, build_go, build_rust, strip_all, strip_debug};

/// Optimized, with DWARF, without frame pointers: only unwind tables can unwind it.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

/// `leaf_ratio [SECONDS]`: leaf_a and leaf_b, same body, called 3:1 from main.
pub fn leaf_ratio() -> PathBuf {
    build_c("leaf_ratio", C_FLAGS)
}

/// `deep_stack [DEPTH]`: a thread spinning in deep_leaf under DEPTH (94) 272-byte frames.
pub fn deep_stack() -> PathBuf {
    build_c("deep_stack", C_FLAGS)
}

/// `deep_paths [DEPTH [SPIN_US]]`: a thread alternating between a DEPTH-deep path (leaf_a) and
/// a DEPTH/4-deep other one (leaf_b).
pub fn deep_paths() -> PathBuf {
    build_c("deep_paths", C_FLAGS)
}

/// `late_threads [DELAY]`: threads "late-1" and "late-2" start DELAY (1) seconds after ready.
pub fn late_threads() -> PathBuf {
    build_c("late_threads", C_FLAGS)
}

/// `exits_soon`: spins in spin_until for 1.5 s and exits 0.
pub fn exits_soon() -> PathBuf {
    build_c("exits_soon", C_FLAGS)
}

/// `signal_frames`: main_work in a loop, interrupted every 1 to 5 ms (at random) by a SIGUSR1
/// handler, on_signal, that spends 1 ms of CPU time in handler_work.
pub fn signal_frames() -> PathBuf {
    build_c("signal_frames", C_FLAGS)
}

/// `nodwarf [SECONDS]`: leaf_ratio's workload with static leaves, built without -g and then
/// stripped of any debug section: names come only from .symtab, unwinding from .eh_frame.
pub fn nodwarf() -> PathBuf {
    strip_debug(&build_c("nodwarf", &["-O2", "-fomit-frame-pointer"]))
}

/// `nodwarf [SECONDS]` as distributions ship servers: stripped of every symbol table but
/// `.dynsym`, so its own functions (leaves and main) have no name at all; `.eh_frame` stays.
pub fn nodwarf_stripped() -> PathBuf {
    strip_all(&build_c("nodwarf", &["-O2", "-fomit-frame-pointer"]))
}

/// `inline_cpp`: rprof_test::Hot::step always inlined into rprof_test::run_hot.
pub fn inline_cpp() -> PathBuf {
    build_cpp("inline_cpp", &["-O2", "-g"])
}

/// `rust_target [THREADS]`: threads "worker-N" calling hot_a and hot_b 3:1.
pub fn rust_target() -> PathBuf {
    build_rust("rust_target", &["-C", "opt-level=3", "-C", "debuginfo=1"])
}

/// `go_target [GOROUTINES]`: goroutines calling main.hotA and main.hotB 3:1.
pub fn go_target() -> PathBuf {
    build_go("go_target", &[])
}

/// `go_server`: a net/http server loaded by 4 client goroutines of its own, GC and poller busy.
pub fn go_server() -> PathBuf {
    build_go("go_server", &[])
}

/// `go_server` linked as release builds and distributions' packages are: without DWARF or a
/// symbol table (`-ldflags=-s -w`).
pub fn go_server_stripped() -> PathBuf {
    build_go("go_server", &["-ldflags=-s -w"])
}

/// `go_cgo`: goroutines calling the C functions c_hot_a and c_hot_b 3:1 through cgo, and a
/// thread of C's own ("c-caller") calling the Go function main.goSpin.
pub fn go_cgo() -> PathBuf {
    build_go("go_cgo", &[])
}

/// `i386_ready`: a static 32-bit x86 program without libc (so gcc-multilib is not needed):
/// prints `ready` and waits in pause() for ever.
pub fn i386_ready() -> PathBuf {
    build_c(
        "i386_ready",
        &[
            "-m32",
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-pie",
            "-no-pie",
            "-O1",
        ],
    )
}

/// `leak_sites TOTALS_FILE`: leak_a and leak_b leak 3:1 in bytes (malloc, never freed) while
/// churn mallocs ~100× as often and frees within 4 calls. Writes
/// `A_BYTES B_BYTES CHURN_BYTES A_CALLS B_CALLS CHURN_CALLS CHURN_NS NOW`.
pub fn leak_sites() -> PathBuf {
    build_c("leak_sites", C_FLAGS)
}

/// `cpp_allocs TOTALS_FILE`: site_a() `new`s 384-byte objects, site_b() `new[]`s 128-byte
/// arrays, alternately, deleting each a few calls later. Writes
/// `A_BYTES B_BYTES A_OBJECTS B_OBJECTS NOW`.
pub fn cpp_allocs() -> PathBuf {
    build_cpp("cpp_allocs", C_FLAGS)
}

/// `rust_allocs TOTALS_FILE`: rust_allocs::site_a and site_b allocate a `Vec<u8>` and a `Box`
/// each, 384 and 128 bytes a call, dropped a few calls later. Writes
/// `A_BYTES B_BYTES A_OBJECTS B_OBJECTS NOW`.
pub fn rust_allocs() -> PathBuf {
    build_rust("rust_allocs", &["-C", "opt-level=3", "-C", "debuginfo=1"])
}

/// `jemalloc_allocs TOTALS_FILE`: cpp_allocs' workload in C with jemalloc's malloc and free
/// (linked with -ljemalloc, which the program checks before `ready`). Writes
/// `A_BYTES B_BYTES A_OBJECTS B_OBJECTS NOW`.
pub fn jemalloc_allocs() -> PathBuf {
    // --no-as-needed: the library comes before the source on the command line, and a linker
    // that drops unneeded libraries by default (Ubuntu's) would drop it.
    let mut flags = C_FLAGS.to_vec();
    flags.extend(["-Wl,--no-as-needed", "-ljemalloc"]);
    build_c("jemalloc_allocs", &flags)
}
