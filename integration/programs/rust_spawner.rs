//! rust_spawner: short-lived threads started with `std::thread` from one named function.
//!
//! Claim under test: the threadcreate profile of a Rust program names its creating function,
//! demangled (`rust_spawner::spawn_helper`), with `std::thread`'s frames between it and
//! `pthread_create`, down to `main`. Every 10 ms, main calls spawn_helper, which starts a
//! thread named "helper" that returns at once; main joins it.
//! Built with `rustc -O -C debuginfo=1`.
//!
//! Usage: rust_spawner

use std::io::Write;
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[inline(never)]
fn spawn_helper(round: u64) -> JoinHandle<u64> {
    thread::Builder::new()
        .name("helper".into())
        .spawn(move || round.wrapping_mul(3))
        .expect("spawn a helper thread")
}

fn main() {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").and_then(|()| stdout.flush()).expect("write to stdout");
    let mut total = 0u64;
    for round in 0.. {
        total = total.wrapping_add(spawn_helper(round).join().expect("a helper returns"));
        thread::sleep(Duration::from_millis(10));
    }
    std::hint::black_box(total);
}
