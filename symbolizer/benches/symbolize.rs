//! Addresses symbolized per second on a large debug binary: cold (a new `ObjectInfo`: symbol
//! table and DWARF index built on first use), DWARF lookups past the frame cache, and warm
//! (frame cache hits).
//!
//! The binary is `$RPROF_BENCH_BINARY`, else the workspace's `target/debug/rprof-agent`, else
//! this benchmark's own executable.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rprof_symbolizer::{Bytes, ObjectInfo};

/// Distinct addresses per cold iteration.
const COLD_ADDRESSES: usize = 1_000;
/// More distinct addresses than the frame cache holds (2 × 16 Ki), so every lookup misses.
const UNCACHED_ADDRESSES: usize = 50_000;
/// Addresses looked up repeatedly in the warm case.
const WARM_ADDRESSES: usize = 1_000;

fn bench_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RPROF_BENCH_BINARY") {
        return PathBuf::from(path);
    }
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/rprof-agent");
    if agent.exists() {
        return agent;
    }
    std::env::current_exe().expect("current exe")
}

/// `count` distinct addresses inside text symbols (per `nm`): up to 8 per function, spread
/// evenly over the binary.
fn addresses(binary: &Path, count: usize) -> Vec<u64> {
    const PER_FUNCTION: u64 = 8;
    let output = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(binary)
        .output()
        .expect("nm is needed by this benchmark");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut all: Vec<u64> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [addr, size, kind, _] if kind.eq_ignore_ascii_case("t") => Some((
                    u64::from_str_radix(addr, 16).ok()?,
                    u64::from_str_radix(size, 16).ok()?,
                )),
                _ => None,
            }
        })
        .flat_map(|(addr, size)| (0..PER_FUNCTION).map(move |k| addr + size * k / PER_FUNCTION))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert!(
        all.len() >= count,
        "{} has only {} distinct code addresses",
        binary.display(),
        all.len()
    );
    let step = all.len() / count;
    all.into_iter().step_by(step).take(count).collect()
}

fn symbolize_all(object: &ObjectInfo, addresses: &[u64]) -> usize {
    addresses
        .iter()
        .map(|&address| object.symbolize(black_box(address)).len())
        .sum()
}

fn benches(c: &mut Criterion) {
    let binary = bench_binary();
    let file = std::fs::File::open(&binary).expect("open bench binary");
    let data = Bytes::map_file(&file).expect("map bench binary");
    let name = binary.display().to_string();
    let fresh = || ObjectInfo::from_bytes(&name, data.clone()).expect("parse bench binary");
    {
        let probe = fresh();
        eprintln!(
            "bench binary: {name} ({} MiB, DWARF: {})",
            data.len() >> 20,
            probe.has_dwarf()
        );
    }

    let mut group = c.benchmark_group("symbolize");
    group.measurement_time(Duration::from_secs(10));

    let cold = addresses(&binary, COLD_ADDRESSES);
    group.throughput(Throughput::Elements(cold.len() as u64));
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter_batched(
            fresh,
            |object| symbolize_all(&object, &cold),
            BatchSize::PerIteration,
        )
    });

    let uncached = addresses(&binary, UNCACHED_ADDRESSES);
    let object = fresh();
    symbolize_all(&object, &uncached);
    group.throughput(Throughput::Elements(uncached.len() as u64));
    group.bench_function("uncached", |b| b.iter(|| symbolize_all(&object, &uncached)));

    let warm = addresses(&binary, WARM_ADDRESSES);
    symbolize_all(&object, &warm);
    group.throughput(Throughput::Elements(warm.len() as u64));
    group.sample_size(50);
    group.bench_function("warm", |b| b.iter(|| symbolize_all(&object, &warm)));
    group.finish();
}

criterion_group!(symbolize, benches);
criterion_main!(symbolize);
