//! rust_allocs: Rust `Vec` and `Box` allocations from two call sites, 3:1 in bytes, counted by
//! the program.
//!
//! Claim under test: allocations through Rust's global allocator (the System allocator: glibc's
//! malloc, under `__rust_alloc`) are attributed to the Rust functions that made them, down to
//! `main`. `site_a` allocates a `Vec<u8>` of 288 bytes and a `Box<[u64; 12]>` (96 bytes): 384
//! bytes in two objects; `site_b` a `Vec<u8>` of 96 bytes and a `Box<[u64; 4]>` (32 bytes): 128
//! bytes in two objects. Each site drops what it allocated SLOTS calls earlier. The sites are
//! called alternately, PAIRS_PER_UNIT times per unit, one unit every UNIT_US µs of
//! CLOCK_MONOTONIC (absolute deadlines): 25 000 allocations per second, 3:1 in bytes, 1:1 in
//! objects.
//!
//! Every 50 ms the totals are written to TOTALS_FILE (a temporary file renamed over it):
//!   "A_BYTES B_BYTES A_OBJECTS B_OBJECTS NOW\n"
//! (bytes and allocations of each site; NOW: CLOCK_MONOTONIC, ns). Prints "ready" once it runs.
//!
//! Usage: rust_allocs TOTALS_FILE

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

const UNIT_US: u64 = 400;
const PAIRS_PER_UNIT: usize = 5;
const SLOTS: usize = 4;

/// What a site keeps alive for a few calls.
struct Kept<const N: usize> {
    _bytes: Vec<u8>,
    _words: Box<[u64; N]>,
}

#[derive(Default)]
struct Counts {
    a_bytes: u64,
    b_bytes: u64,
    a_objects: u64,
    b_objects: u64,
}

#[inline(never)]
fn site_a(slots: &mut [Option<Kept<12>>; SLOTS], i: usize, counts: &mut Counts) {
    let mut bytes = Vec::with_capacity(288);
    bytes.resize(288, 0xa5u8);
    let words = Box::new([i as u64 | 1; 12]);
    slots[i % SLOTS] = Some(black_box(Kept {
        _bytes: black_box(bytes),
        _words: black_box(words),
    }));
    counts.a_bytes += 288 + 96;
    counts.a_objects += 2;
}

#[inline(never)]
fn site_b(slots: &mut [Option<Kept<4>>; SLOTS], i: usize, counts: &mut Counts) {
    let mut bytes = Vec::with_capacity(96);
    bytes.resize(96, 0x5au8);
    let words = Box::new([i as u64 | 1; 4]);
    slots[i % SLOTS] = Some(black_box(Kept {
        _bytes: black_box(bytes),
        _words: black_box(words),
    }));
    counts.b_bytes += 96 + 32;
    counts.b_objects += 2;
}

fn now_ns() -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

const CLOCK_MONOTONIC: i32 = 1;

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// The line is formatted into a stack buffer: writing the totals allocates nothing.
fn write_totals(path: &str, tmp: &str, counts: &Counts) {
    let mut line = [0u8; 256];
    let mut cursor = std::io::Cursor::new(&mut line[..]);
    let _ = writeln!(
        cursor,
        "{} {} {} {} {}",
        counts.a_bytes,
        counts.b_bytes,
        counts.a_objects,
        counts.b_objects,
        now_ns()
    );
    let length = cursor.position() as usize;
    if let Ok(mut file) = std::fs::File::create(tmp) {
        if file.write_all(&line[..length]).is_ok() {
            drop(file);
            let _ = std::fs::rename(tmp, path);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        eprintln!("usage: {} TOTALS_FILE", args[0]);
        std::process::exit(2);
    }
    let path = args[1].clone();
    let tmp = format!("{path}.tmp");
    let mut counts = Counts::default();
    let mut slots_a: [Option<Kept<12>>; SLOTS] = Default::default();
    let mut slots_b: [Option<Kept<4>>; SLOTS] = Default::default();
    write_totals(&path, &tmp, &counts);
    println!("ready");
    std::io::stdout().flush().expect("flush stdout");
    let mut next = now_ns();
    let mut next_totals = next;
    let mut calls = 0;
    loop {
        for _ in 0..PAIRS_PER_UNIT {
            site_a(&mut slots_a, calls, &mut counts);
            site_b(&mut slots_b, calls, &mut counts);
            calls += 1;
        }
        let now = now_ns();
        if now >= next_totals {
            write_totals(&path, &tmp, &counts);
            next_totals = now + 50_000_000;
        }
        next += UNIT_US * 1000;
        if now > next + 100_000_000 {
            next = now;
        }
        if next > now {
            std::thread::sleep(Duration::from_nanos(next - now));
        }
    }
}
