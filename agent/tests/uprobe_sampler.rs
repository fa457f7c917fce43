//! The sampler with uprobes against the real kernel: every hit of a probed function in the
//! target is a sample, hits in another process running the same binary are not, and the
//! target's threads come and go in FORK and EXIT records.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{compile, Program, TempDir};
use rprof_agent::kinds::threadcreate::find_functions;
use rprof_agent::sampler::{EventKind, Record, Sampler, SamplerConfig, Trigger, Uprobe};

/// On each line read from stdin: calls probe_me HITS times, then starts and joins THREADS
/// threads, then prints "done".
const PROGRAM_C: &str = r#"
#include <pthread.h>
#include <stdio.h>

#define HITS 50
#define THREADS 5

__attribute__((noinline, noipa)) int probe_me(int x) { return x * 3 + 1; }

static void *returns(void *arg) { return arg; }

int main(void) {
    char line[16];
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        int x = 0;
        for (int i = 0; i < HITS; i++) x = probe_me(x);
        for (int i = 0; i < THREADS; i++) {
            pthread_t thread;
            pthread_create(&thread, NULL, returns, NULL);
            pthread_join(thread, NULL);
        }
        printf("done %d\n", x);
        fflush(stdout);
    }
    return 0;
}
"#;

const HITS: usize = 50;
const THREADS: usize = 5;

#[test]
fn every_hit_in_the_target_is_a_sample_and_only_those() {
    let dir = TempDir::new();
    let exe = compile(&dir, "probed", PROGRAM_C);
    let mut target = Program::spawn(&exe);
    target.expect_line("ready");
    // The same binary in another process: the probe fires there too, the sampler drops it.
    let mut bystander = Program::spawn(&exe);
    bystander.expect_line("ready");
    let offset = probe_offset(&exe);
    let config = SamplerConfig {
        trigger: Trigger::Uprobes(vec![Uprobe {
            path: CString::new(exe.as_os_str().as_bytes()).expect("a path without NUL"),
            offset,
            name: "probe_me".into(),
        }]),
        ..SamplerConfig::new(target.pid())
    };
    let mut sampler = Sampler::open(&config).expect("open the uprobe sampler");
    assert_eq!(sampler.event_kind(), EventKind::Uprobe);
    assert_eq!(sampler.refresh_threads().expect("refresh"), 0);

    for program in [&mut target, &mut bystander] {
        run_once(program);
    }
    let probe_address = runtime_address(target.pid(), &exe, offset);
    let mut seen = Seen::default();
    let started = Instant::now();
    while seen.exits.len() < THREADS && started.elapsed() < Duration::from_secs(10) {
        sampler.wait(Duration::from_millis(100)).expect("wait");
        sampler.drain(&mut |record| seen.record(record));
    }

    assert_eq!(seen.samples.len(), HITS, "{:?}", seen.samples);
    for &(tid, ip, stack_len) in &seen.samples {
        assert_eq!(tid, target.pid(), "a hit of another thread or process");
        assert_eq!(ip, probe_address, "the probed instruction");
        assert!(stack_len > 0, "no stack copy");
    }
    assert_eq!(seen.forks.len(), THREADS, "{:?}", seen.forks);
    let mut exits = seen.exits.clone();
    exits.sort_unstable();
    let mut forks = seen.forks.clone();
    forks.sort_unstable();
    assert_eq!(exits, forks, "each thread created exits");
    assert!(
        sampler.stats().foreign_dropped >= HITS as u64,
        "{:?}",
        sampler.stats()
    );
}

#[derive(Default)]
struct Seen {
    /// (tid, ip, stack bytes) of each sample.
    samples: Vec<(u32, u64, usize)>,
    forks: Vec<u32>,
    exits: Vec<u32>,
}

impl Seen {
    fn record(&mut self, record: Record<'_>) {
        match record {
            Record::Sample(sample) => {
                assert!(sample.user_regs_available, "{sample:?}");
                self.samples
                    .push((sample.tid, sample.ip, sample.stack.len()));
            }
            Record::Fork { tid, .. } => self.forks.push(tid),
            Record::Exit { tid, .. } => self.exits.push(tid),
            Record::Lost { count } => panic!("{count} records lost"),
            Record::Mmap { .. } | Record::Comm { .. } | Record::Switch { .. } => {}
        }
    }
}

/// The file offset of probe_me, from the binary's symbol table.
fn probe_offset(exe: &Path) -> u64 {
    let image = fs::read(exe).expect("read the test program");
    let found = find_functions(&image, &["probe_me"]);
    let [(_, function)] = found[..] else {
        panic!("probe_me not found once: {found:?}");
    };
    function.file_offset
}

/// Where `pid` runs the instruction at `offset` of `exe`, from its maps.
fn runtime_address(pid: u32, exe: &Path, offset: u64) -> u64 {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let exe = exe.to_str().expect("a UTF-8 path");
    maps.lines()
        .filter(|line| line.ends_with(exe))
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = fields[0].split_once('-')?;
            let hex = |text: &str| u64::from_str_radix(text, 16).ok();
            let (start, end, file_offset) = (hex(start)?, hex(end)?, hex(fields[2])?);
            let delta = offset.checked_sub(file_offset)?;
            (delta < end - start).then_some(start + delta)
        })
        .unwrap_or_else(|| panic!("offset {offset:#x} of {exe} is not mapped:\n{maps}"))
}

/// One round of hits and threads, waited for.
fn run_once(program: &mut Program) {
    program.go();
    program.expect_line("done");
}
