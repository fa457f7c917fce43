//! rust_locks: lock_waits in Rust: two threads wait on two contended `std::sync::Mutex`es
//! (futex-based, not pthread's) from two call sites, the first about three times as long in
//! total as the second, and measure how long they waited.
//!
//! Claim under test: the block profile sees Rust's own lock (`Mutex::lock_contended`), labels
//! its waits `lock` and splits the delay between the call sites as the program measured.
//! Every 50 ms the totals are written to TOTALS_FILE (a temporary file renamed over it) as
//! "WAITED_A_NS WAITED_B_NS NOW\n" (NOW: CLOCK_MONOTONIC, ns). Prints "ready" once its
//! threads run. Built with `rustc -C opt-level=3 -C debuginfo=1`.
//!
//! Usage: rust_locks TOTALS_FILE

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const HOLD: Duration = Duration::from_millis(3);
const GAP: Duration = Duration::from_micros(100);
const REST_B: Duration = Duration::from_millis(3);

static LOCK_A: Mutex<u64> = Mutex::new(0);
static LOCK_B: Mutex<u64> = Mutex::new(0);
static WAITED_A: AtomicU64 = AtomicU64::new(0);
static WAITED_B: AtomicU64 = AtomicU64::new(0);

fn monotonic_ns() -> u64 {
    let mut now = std::mem::MaybeUninit::<[i64; 2]>::uninit();
    // CLOCK_MONOTONIC is 1; clock_gettime fills two i64s (tv_sec, tv_nsec) on x86-64.
    extern "C" {
        fn clock_gettime(clock: i32, now: *mut [i64; 2]) -> i32;
    }
    // SAFETY: `now` is valid for one timespec, which clock_gettime writes.
    let now = unsafe {
        clock_gettime(1, now.as_mut_ptr());
        now.assume_init()
    };
    now[0] as u64 * 1_000_000_000 + now[1] as u64
}

fn hold(lock: &'static Mutex<u64>) -> ! {
    loop {
        let mut held = lock.lock().unwrap_or_else(|e| e.into_inner());
        *held += 1;
        thread::sleep(HOLD);
        drop(held);
        thread::sleep(GAP);
    }
}

#[inline(never)]
fn wait_at_a() {
    let start = Instant::now();
    let held = LOCK_A.lock().unwrap_or_else(|e| e.into_inner());
    WAITED_A.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    drop(held);
}

#[inline(never)]
fn wait_at_b() {
    let start = Instant::now();
    let held = LOCK_B.lock().unwrap_or_else(|e| e.into_inner());
    WAITED_B.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    drop(held);
}

fn write_totals(path: &str) {
    let tmp = format!("{path}.tmp");
    if let Ok(mut file) = std::fs::File::create(&tmp) {
        let line = format!(
            "{} {} {}\n",
            WAITED_A.load(Ordering::Relaxed),
            WAITED_B.load(Ordering::Relaxed),
            monotonic_ns()
        );
        if file.write_all(line.as_bytes()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: rust_locks TOTALS_FILE");
    let spawn = |name: &str, body: fn()| {
        thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .expect("spawn a thread")
    };
    spawn("holder_a", || hold(&LOCK_A));
    spawn("holder_b", || hold(&LOCK_B));
    spawn("waiter_a", || loop {
        wait_at_a();
        thread::sleep(GAP / 2);
    });
    // A random rest, REST_B on average: waiter_b comes back at a random point of a hold.
    spawn("waiter_b", || {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        loop {
            wait_at_b();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let rest = x % (2 * REST_B.as_micros() as u64);
            thread::sleep(Duration::from_micros(rest));
        }
    });
    write_totals(&path);
    println!("ready");
    std::io::stdout().flush().expect("flush stdout");
    loop {
        thread::sleep(Duration::from_millis(50));
        write_totals(&path);
    }
}
