//! rust_target: two Rust functions sharing the work 3:1 across named threads.
//!
//! Claim under test: Rust symbols come out demangled without their hash
//! (`rust_target::hot_a`, not `_ZN11rust_target5hot_a17h…E` nor
//! `rust_target::hot_a::h0123…`), thread names set with
//! `std::thread::Builder::name` become the "thread" label, and time is
//! attributed right: each worker calls hot_a three times per hot_b call,
//! both doing the same work, so hot_a holds 75 % of the leaf samples.
//! Built with `rustc -C opt-level=3 -C debuginfo=1`.
//!
//! Usage: rust_target [THREADS]   (default 2)

use std::hint::black_box;
use std::io::Write;
use std::sync::mpsc;
use std::thread;

/// Iterations per call on average: a few hundred microseconds of serial work.
const WORK: u64 = 300_000;

/// Iterations of one call: WORK/2 to 3·WORK/2, drawn afresh for every call (xorshift), the same
/// on average for both functions. A fixed amount per call would give the workers' loop a fixed
/// period, and samples taken every so much of the thread's CPU time can lock in phase with it
/// (81 % instead of 75 % was seen).
fn iterations(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    WORK / 2 + *state % WORK
}

// The two bodies differ only in a constant: LLVM's MergeFunctions, on by
// default in rustc, would fold byte-identical functions into one symbol.
#[inline(never)]
fn hot_a(seed: u64, work: u64) -> u64 {
    let mut x = black_box(seed) | 1;
    for _ in 0..work {
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7);
    }
    x
}

#[inline(never)]
fn hot_b(seed: u64, work: u64) -> u64 {
    let mut x = black_box(seed) | 1;
    for _ in 0..work {
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(7);
    }
    x
}

fn worker(started: mpsc::Sender<()>) {
    started.send(()).expect("main thread waits for the workers");
    let mut seed = 1u64;
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    loop {
        seed = hot_a(seed, iterations(&mut random))
            ^ hot_a(seed, iterations(&mut random))
            ^ hot_a(seed, iterations(&mut random))
            ^ hot_b(seed, iterations(&mut random));
        black_box(seed);
    }
}

fn main() {
    let threads: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("usage: rust_target [THREADS]"),
        None => 2,
    };
    let (started, ready) = mpsc::channel();
    for i in 0..threads {
        let started = started.clone();
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(started))
            .expect("spawn a worker thread");
    }
    for _ in 0..threads {
        ready.recv().expect("a worker starts");
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").and_then(|()| stdout.flush()).expect("write to stdout");
    // The workers never return: park the main thread, which holds no CPU.
    loop {
        thread::park();
    }
}
