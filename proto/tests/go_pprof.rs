//! `go tool pprof`, the reference reader, must accept what the builder
//! writes and report the same figures as the builder was given.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use rprof_proto::{
    pprof_top, write_gzip, FunctionSpec, LabelSpec, LineSpec, MappingSpec, Profile, ProfileBuilder,
};

const PERIOD: i64 = 10_000_000;
const EXE: &str = "/usr/local/bin/mandelbrot";

fn function(name: &'static str, filename: &'static str, start_line: i64) -> FunctionSpec<'static> {
    FunctionSpec {
        name,
        system_name: name,
        filename,
        start_line,
    }
}

fn at(function: FunctionSpec<'static>, line: i64) -> LineSpec<'static> {
    LineSpec {
        function,
        line,
        column: 0,
    }
}

/// A profile shaped like the agent's CPU profile of a program whose worker
/// threads render rows, with `mandel_iter` inlined into `render_rows`:
///
/// | stack (leaf first)                        | thread        | samples |
/// |-------------------------------------------|---------------|---------|
/// | mandel_iter ⊂ render_rows, worker_main    | 1201 worker-1 | 6       |
/// | mandel_iter ⊂ render_rows, worker_main    | 1202 worker-2 | 2       |
/// | render_rows, worker_main                  | 1201 worker-1 | 3       |
/// | main                                      | 1200 main     | 1       |
fn cpu_profile() -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        PERIOD,
    );
    b.set_time_nanos(1_700_000_000_000_000_000);
    b.set_duration_nanos(2_000_000_000);
    b.add_comment("event: cpu-clock");
    // Newer than go 1.19's pprof, which must skip it as an unknown field.
    b.set_doc_url("https://example.com/rprof/cpu");
    let exe = b.add_mapping(MappingSpec {
        memory_start: 0x55d0_0000_1000,
        memory_limit: 0x55d0_0000_9000,
        file_offset: 0x1000,
        filename: EXE,
        build_id: "3f1c5a7e9b2d4c6e8f0a1b2c3d4e5f6071829304",
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    });
    let main = function("main", "main.c", 40);
    let worker_main = function("worker_main", "worker.c", 5);
    let render_rows = function("render_rows", "render.c", 10);
    let mandel_iter = function("mandel_iter", "render.c", 3);

    let in_iter = b.add_location(
        exe,
        0x55d0_0000_2040,
        &[at(mandel_iter, 6), at(render_rows, 14)],
    );
    let in_rows = b.add_location(exe, 0x55d0_0000_2080, &[at(render_rows, 17)]);
    let in_worker = b.add_location(exe, 0x55d0_0000_3013, &[at(worker_main, 9)]);
    let in_main = b.add_location(exe, 0x55d0_0000_1100, &[at(main, 44)]);

    let worker_1 = [
        LabelSpec::num("thread_id", 1201, "id"),
        LabelSpec::str("thread_name", "worker-1"),
    ];
    let worker_2 = [
        LabelSpec::num("thread_id", 1202, "id"),
        LabelSpec::str("thread_name", "worker-2"),
    ];
    let main_thread = [
        LabelSpec::num("thread_id", 1200, "id"),
        LabelSpec::str("thread_name", "main"),
    ];
    let tick = [1, PERIOD];
    for (stack, labels, count) in [
        (&[in_iter, in_worker][..], &worker_1, 6),
        (&[in_iter, in_worker][..], &worker_2, 2),
        (&[in_rows, in_worker][..], &worker_1, 3),
        (&[in_main][..], &main_thread, 1),
    ] {
        for _ in 0..count {
            b.add_sample(stack, &tick, labels);
        }
    }
    b.build()
}

/// Runs `go tool pprof ARGS FILE` in a sandboxed HOME and returns stdout.
fn go_pprof(args: &[&str], file: &Path, home: &Path) -> String {
    let output = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .env("HOME", home)
        .env("PPROF_TMPDIR", home)
        .output()
        .unwrap_or_else(|e| match e.kind() {
            ErrorKind::NotFound => panic!(
                "`go` is not on PATH; run scripts/setup to install Go, which provides `go tool pprof`"
            ),
            _ => panic!("cannot run `go tool pprof`: {e}"),
        });
    let stdout = String::from_utf8(output.stdout).expect("pprof prints UTF-8");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "go tool pprof {args:?} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    assert!(
        !stderr.contains("symbolization"),
        "pprof tried to symbolize a fully symbolized profile:\n{stderr}"
    );
    stdout
}

/// Parses `-top` rows (`flat flat% sum% cum cum% name [(inline)]`) into
/// name → (flat, cum).
fn top_rows(top: &str) -> BTreeMap<String, (String, String)> {
    top.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [flat, flat_pct, _, cum, _, name, ..] = fields.as_slice() else {
                return None;
            };
            flat_pct
                .ends_with('%')
                .then(|| (name.to_string(), (flat.to_string(), cum.to_string())))
        })
        .collect()
}

fn written_profile() -> (Profile, tempfile::TempDir, std::path::PathBuf) {
    let profile = cpu_profile();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cpu.pb.gz");
    let file = std::fs::File::create(&path).expect("create profile file");
    write_gzip(&profile, file).expect("write profile");
    (profile, dir, path)
}

#[test]
fn go_pprof_top_reports_cpu_time_per_function() {
    let (_, dir, path) = written_profile();
    let top = go_pprof(&["-top"], &path, dir.path());

    assert!(
        top.contains("of 120ms total"),
        "total of 12 samples:\n{top}"
    );
    let rows = top_rows(&top);
    let expect = |name: &str, flat: &str, cum: &str| {
        assert_eq!(
            rows.get(name),
            Some(&(flat.to_string(), cum.to_string())),
            "{name} in:\n{top}"
        );
    };
    expect("mandel_iter", "80ms", "80ms");
    expect("render_rows", "30ms", "110ms");
    expect("main", "10ms", "10ms");
    expect("worker_main", "0", "110ms");
    assert_eq!(rows.len(), 4, "{top}");
}

#[test]
fn go_pprof_agrees_with_pprof_top_on_sample_counts() {
    let (profile, dir, path) = written_profile();
    let top = go_pprof(&["-top", "-sample_index=samples"], &path, dir.path());

    let go_rows = top_rows(&top);
    let ours: BTreeMap<String, (String, String)> = pprof_top(&profile, 0, usize::MAX)
        .into_iter()
        .map(|e| (e.name, (e.flat.to_string(), e.cum.to_string())))
        .collect();
    assert_eq!(go_rows, ours, "go tool pprof -top:\n{top}");
    assert_eq!(ours["mandel_iter"], ("8".to_string(), "8".to_string()));
}

/// Asserts that `expected` appears as consecutive lines of `text`, comparing
/// lines with their runs of whitespace collapsed.
fn assert_lines(text: &str, expected: &[&str]) {
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        lines.windows(expected.len()).any(|w| w == expected),
        "expected lines {expected:#?} in:\n{text}"
    );
}

#[test]
fn go_pprof_raw_shows_samples_labels_inlines_and_mapping() {
    let (_, dir, path) = written_profile();
    let raw = go_pprof(&["-raw"], &path, dir.path());

    assert_lines(&raw, &["Comment: event: cpu-clock"]);
    assert_lines(&raw, &["PeriodType: cpu nanoseconds", "Period: 10000000"]);
    assert_lines(
        &raw,
        &["Duration: 2s", "Samples:", "samples/count cpu/nanoseconds"],
    );
    // Aggregated samples: values [n, n * period], stacks by location id.
    for (values, stack, name, tid) in [
        ("6 60000000", "1 2", "worker-1", "1201"),
        ("2 20000000", "1 2", "worker-2", "1202"),
        ("3 30000000", "3 2", "worker-1", "1201"),
        ("1 10000000", "4", "main", "1200"),
    ] {
        assert_lines(
            &raw,
            &[
                &format!("{values}: {stack}"),
                &format!("thread_name:[{name}]"),
                &format!("thread_id:[{tid} id]"),
            ],
        );
    }
    // The inlined callee comes first, the physical function last.
    assert_lines(
        &raw,
        &[
            "1: 0x55d000002040 M=1 mandel_iter render.c:6 s=3",
            "render_rows render.c:14 s=10",
            "2: 0x55d000003013 M=1 worker_main worker.c:9 s=5",
            "3: 0x55d000002080 M=1 render_rows render.c:17 s=10",
            "4: 0x55d000001100 M=1 main main.c:44 s=40",
        ],
    );
    assert_lines(
        &raw,
        &[
            "Mappings",
            "1: 0x55d000001000/0x55d000009000/0x1000 /usr/local/bin/mandelbrot \
             3f1c5a7e9b2d4c6e8f0a1b2c3d4e5f6071829304 [FN][FL][LN][IN]",
        ],
    );
}
