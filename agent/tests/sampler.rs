//! The sampler against the real kernel: a C program with busy threads, one of them started after
//! sampling began.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{compile, Program, TempDir};
use rprof_agent::sampler::{EventKind, Record, Sampler, SamplerConfig, SamplerError};

/// Two threads spin (main and "rp-worker"); a third ("rp-late") starts one second later. Main
/// starts spinning, and the second counting, when a line arrives on stdin, so that all of this
/// happens while the sampler runs however loaded the machine is. Each thread prints its role,
/// tid and stack range once it is named.
const SPINNER_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *role) {
    pthread_attr_t attr;
    void *low;
    size_t size;
    pthread_getattr_np(pthread_self(), &attr);
    pthread_attr_getstack(&attr, &low, &size);
    printf("%s %ld %lx %lx\n", role, (long)syscall(SYS_gettid), (unsigned long)low,
           (unsigned long)low + size);
    fflush(stdout);
}

__attribute__((noinline)) static void burn(void) {
    for (int i = 0; i < 1000; i++) sink += i;
}

static void *worker(void *name) {
    pthread_setname_np(pthread_self(), (const char *)name);
    report((const char *)name);
    for (;;) burn();
    return NULL;
}

int main(void) {
    pthread_t early, late;
    report("main");
    pthread_create(&early, NULL, worker, "rp-worker");
    getchar();
    double start = now();
    while (now() - start < 1.0) burn();
    pthread_create(&late, NULL, worker, "rp-late");
    for (;;) burn();
}
"#;

const FREQUENCY: u64 = 200;
const SAMPLING: Duration = Duration::from_secs(3);

#[test]
fn samples_every_thread_of_a_busy_process_including_a_late_one() {
    let dir = TempDir::new();
    let exe = compile(&dir, "spinner", SPINNER_C);
    let mut target = Program::spawn(&exe);
    let main = thread(&target, "main");
    let worker = thread(&target, "rp-worker");

    let config = SamplerConfig {
        frequency: FREQUENCY,
        ..SamplerConfig::new(target.pid())
    };
    let mut sampler = Sampler::open(&config).expect("open the sampler");
    let opened = Instant::now();
    let cpu_at_open = [
        cpu_time(target.pid(), main.tid),
        cpu_time(target.pid(), worker.tid),
    ];
    target.go();
    if !Path::new("/sys/bus/event_source/devices/cpu").exists() {
        // No hardware PMU on this machine: the cpu-clock fallback must have been taken.
        assert_eq!(sampler.event_kind(), EventKind::CpuClock);
    }

    let mut seen = Seen::default();
    while opened.elapsed() < SAMPLING {
        sampler.wait(Duration::from_millis(100)).expect("wait");
        sampler.drain(&mut |record| seen.record(record));
        sampler.refresh_threads().expect("refresh threads");
    }
    let late = thread(&target, "rp-late");
    let cpu_used = [
        cpu_time(target.pid(), main.tid) - cpu_at_open[0],
        cpu_time(target.pid(), worker.tid) - cpu_at_open[1],
        cpu_time(target.pid(), late.tid),
    ];
    sampler.drain(&mut |record| seen.record(record));
    let elapsed = opened.elapsed();
    let maps = Maps::read(target.pid());
    let stats = sampler.stats();

    println!(
        "{} samples in {:.2} s ({:.0}/s), lost {}, per thread {:?}, CPU used {cpu_used:?}, \
         {stats:?}",
        stats.samples,
        elapsed.as_secs_f64(),
        stats.samples as f64 / elapsed.as_secs_f64(),
        stats.lost,
        seen.samples
            .iter()
            .map(|(tid, s)| (tid, s.len()))
            .collect::<Vec<_>>(),
    );

    for (thread, cpu) in [&main, &worker, &late].into_iter().zip(cpu_used) {
        let samples = seen.samples.get(&thread.tid).map_or(&[][..], Vec::as_slice);
        // cpu-clock samples per second of CPU time the thread got, not of wall time: the two
        // cores are shared with the test and whatever else runs. Fewer than 40 % would mean
        // samples go missing; more than expected, that a thread is sampled twice.
        let expected = FREQUENCY as f64 * cpu.as_secs_f64();
        let ratio = samples.len() as f64 / expected;
        assert!(
            !samples.is_empty() && (0.4..=1.25).contains(&ratio),
            "{}: {} samples, {expected:.0} expected for {cpu:?} of CPU",
            thread.role,
            samples.len()
        );
        for sample in samples {
            check_sample(sample, thread, &maps, config.stack_bytes);
        }
    }
    assert!(
        seen.comms
            .contains(&(late.tid, "rp-late".to_owned(), false)),
        "no COMM record for the late thread's name: {:?}",
        seen.comms
    );
    assert!(
        seen.forks.contains(&late.tid),
        "no FORK record for the late thread"
    );
    assert_eq!(
        stats.samples,
        seen.samples.values().map(|s| s.len() as u64).sum::<u64>()
    );

    // Once the target is gone, waiting neither fails nor spins, and the exits are reported.
    target.kill();
    assert!(!sampler.target_alive());
    sampler.drain(&mut |record| seen.record(record));
    let before = Instant::now();
    let woke = sampler
        .wait(Duration::from_millis(200))
        .expect("wait after exit");
    assert!(
        woke || before.elapsed() >= Duration::from_millis(150),
        "wait returned at once without data"
    );
    sampler.drain(&mut |record| seen.record(record));
    assert!(
        seen.exits.contains(&main.tid),
        "no EXIT record for the main thread"
    );
}

/// A thread that lives in system calls.
const SYSCALLER_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    printf("main %ld 0 0\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    for (;;) syscall(SYS_getppid);
}
"#;

#[test]
fn kernel_call_chains_come_with_the_user_registers() {
    let dir = TempDir::new();
    let exe = compile(&dir, "syscaller", SYSCALLER_C);
    let target = Program::spawn(&exe);
    let main = thread(&target, "main");
    let config = SamplerConfig {
        kernel: true,
        frequency: FREQUENCY,
        ..SamplerConfig::new(target.pid())
    };
    let mut sampler = match Sampler::open(&config) {
        Ok(sampler) => sampler,
        // Kernel samples need CAP_PERFMON (or root) at perf_event_paranoid >= 2: then the error
        // must say so.
        Err(error @ SamplerError::PermissionDenied { .. }) => {
            assert!(error.to_string().contains("perf_event_paranoid"), "{error}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let mut with_kernel_frames = 0;
    let mut samples = 0;
    let started = Instant::now();
    let maps = Maps::read(target.pid());
    while started.elapsed() < Duration::from_secs(1) {
        sampler.wait(Duration::from_millis(100)).expect("wait");
        sampler.drain(&mut |record| {
            let Record::Sample(sample) = record else {
                return;
            };
            samples += 1;
            assert_eq!(sample.tid, main.tid);
            // The unwinder starts from user space even when the sample hit the kernel.
            assert!(
                sample.user_regs_available && !sample.stack.is_empty(),
                "{sample:?}"
            );
            assert!(maps.executable(sample.ip), "user ip expected: {sample:?}");
            if !sample.kernel_callchain.is_empty() {
                with_kernel_frames += 1;
                let kernel_half = 1u64 << 63;
                assert!(
                    sample.kernel_callchain.iter().all(|&ip| ip >= kernel_half),
                    "user address in the kernel call chain: {sample:?}"
                );
            }
        });
    }
    println!("{samples} samples, {with_kernel_frames} with kernel frames");
    assert!(
        with_kernel_frames > 0,
        "no kernel call chain in {samples} samples"
    );
}

#[test]
fn a_missing_process_is_reported_as_such() {
    // PIDs are below pid_max, so pid_max itself never names a process.
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("read pid_max")
        .trim()
        .parse()
        .expect("parse pid_max");
    let error = Sampler::open(&SamplerConfig::new(pid_max))
        .err()
        .expect("no such process");
    assert!(
        matches!(error, SamplerError::NoSuchProcess(pid) if pid == pid_max),
        "{error}"
    );
}

#[test]
fn a_kernel_thread_is_refused() {
    let comm = fs::read_to_string("/proc/2/comm").expect("read /proc/2/comm");
    assert_eq!(
        comm.trim(),
        "kthreadd",
        "PID 2 is expected to be kthreadd here"
    );
    let error = Sampler::open(&SamplerConfig::new(2))
        .err()
        .expect("kthreadd refused");
    assert!(matches!(error, SamplerError::KernelThread(2)), "{error}");
    assert!(!error.to_string().contains('\n'));
}

/// What a sample said, kept after the record's borrow ends.
#[derive(Debug)]
struct SeenSample {
    ip: u64,
    sp: u64,
    user_regs: bool,
    stack_len: usize,
}

#[derive(Default)]
struct Seen {
    samples: HashMap<u32, Vec<SeenSample>>,
    comms: Vec<(u32, String, bool)>,
    forks: Vec<u32>,
    exits: Vec<u32>,
}

impl Seen {
    fn record(&mut self, record: Record<'_>) {
        match record {
            Record::Sample(sample) => {
                self.samples
                    .entry(sample.tid)
                    .or_default()
                    .push(SeenSample {
                        ip: sample.ip,
                        sp: sample.sp,
                        user_regs: sample.user_regs_available,
                        stack_len: sample.stack.len(),
                    })
            }
            Record::Comm {
                tid, name, exec, ..
            } => self.comms.push((tid, name.to_owned(), exec)),
            Record::Fork { tid, .. } => self.forks.push(tid),
            Record::Exit { tid, .. } => self.exits.push(tid),
            Record::Lost { .. } | Record::Mmap { .. } | Record::Switch { .. } => {}
        }
    }
}

fn check_sample(sample: &SeenSample, thread: &Thread, maps: &Maps, stack_bytes: u32) {
    let role = &thread.role;
    assert!(
        sample.user_regs,
        "{role}: sample without user registers: {sample:?}"
    );
    assert!(sample.stack_len > 0, "{role}: empty stack copy: {sample:?}");
    assert!(
        sample.stack_len <= stack_bytes as usize,
        "{role}: {sample:?}"
    );
    assert!(
        thread.stack.contains(&sample.sp),
        "{role}: sp outside the thread's stack {:x?}: {sample:?}",
        thread.stack
    );
    assert!(
        maps.executable(sample.ip),
        "{role}: ip outside executable mappings: {sample:?}"
    );
}

/// A thread of the target, as it reported itself.
struct Thread {
    role: String,
    tid: u32,
    stack: std::ops::Range<u64>,
}

/// CPU time a thread has used (the first field of its schedstat, in nanoseconds).
fn cpu_time(pid: u32, tid: u32) -> Duration {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let nanos = text.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(nanos.unwrap_or_else(|| panic!("unexpected {path}: {text}")))
}

/// Waits for the thread playing `role` to report itself ("ROLE TID STACK_LOW STACK_HIGH").
fn thread(program: &Program, role: &str) -> Thread {
    loop {
        let line = program.next_line(role);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, tid, low, high] = fields[..] else {
            panic!("unexpected line from the test program: {line}");
        };
        if name == role {
            let hex = |text: &str| u64::from_str_radix(text, 16).expect("hex address");
            return Thread {
                role: role.to_owned(),
                tid: tid.parse().expect("tid"),
                stack: hex(low)..hex(high),
            };
        }
    }
}

/// Executable ranges of /proc/PID/maps.
struct Maps(Vec<std::ops::Range<u64>>);

impl Maps {
    fn read(pid: u32) -> Maps {
        let text = fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
        let ranges = text
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .nth(1)
                    .is_some_and(|perms| perms.contains('x'))
            })
            .filter_map(|line| {
                let (low, high) = line.split_whitespace().next()?.split_once('-')?;
                Some(u64::from_str_radix(low, 16).ok()?..u64::from_str_radix(high, 16).ok()?)
            })
            .collect();
        Maps(ranges)
    }

    fn executable(&self, address: u64) -> bool {
        self.0.iter().any(|range| range.contains(&address))
    }
}
