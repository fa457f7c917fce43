//! How long a snapshot stops its target, for targets with 10, 100 and 1000 threads.
//!
//! `cargo bench -p rprof-agent --bench snapshot_pause` prints, per thread count, the median over a
//! few runs of the pause (the longest any thread was stopped: 0 unless the ptrace fallback ran),
//! of the whole `take_snapshot` call (procfs reads included), how many stacks and bytes were
//! copied, and how many stacks were taken by stopping the thread (the most over the runs).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rprof_agent::snapshot::{take_snapshot, thread_ids, CaptureSource, SnapshotOptions};

/// argv[1] threads in total: argv[2] of them spinning, the others blocked in nanosleep, on a
/// condition variable or reading a pipe, like a server waiting for work.
const TARGET_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];

static void *spinner(void *arg) {
    for (;;) (*(volatile long *)arg)++;
}

static void *blocked(void *arg) {
    long kind = (long)arg % 3;
    char c;
    struct timespec second = {1, 0};
    for (;;) {
        if (kind == 0) nanosleep(&second, NULL);
        if (kind == 1) {
            pthread_mutex_lock(&lock);
            pthread_cond_wait(&never, &lock);
            pthread_mutex_unlock(&lock);
        }
        if (kind == 2 && read(pipe_fds[0], &c, 1) < 0) return arg;
    }
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 10;
    int spinners = argc > 2 ? atoi(argv[2]) : 0;
    static long spins;
    pthread_t thread;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pipe(pipe_fds) != 0) return 1;
    for (long i = 0; i < threads - 1; i++) {
        void *(*body)(void *) = i < spinners ? spinner : blocked;
        if (pthread_create(&thread, NULL, body, i < spinners ? (void *)&spins : (void *)i) != 0)
            return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"#;

/// (threads, spinning threads). A stopping thread needs a CPU to reach its stop, so with more
/// spinning threads than cores the pause becomes a figure of the scheduler, not of the agent.
const TARGETS: [(usize, usize); 6] = [(10, 1), (100, 1), (300, 1), (1000, 1), (100, 0), (100, 8)];
const RUNS: usize = 9;

fn main() {
    let exe = compile();
    println!(
        "threads  spinning  pause(median)  pause(min..max)      take_snapshot  stacks  stack bytes  stopped"
    );
    for (threads, spinners) in TARGETS {
        let target = Target::spawn(&exe, threads, spinners);
        let runs: Vec<Run> = (0..RUNS).map(|_| Run::measure(target.pid())).collect();
        report(threads, spinners, runs);
    }
}

struct Run {
    pause: Duration,
    total: Duration,
    stacks: usize,
    stack_bytes: usize,
    stopped: usize,
}

impl Run {
    fn measure(pid: u32) -> Run {
        let started = Instant::now();
        let snapshot = take_snapshot(pid, &SnapshotOptions::default()).expect("snapshot");
        let total = started.elapsed();
        if let Some(error) = snapshot.stack_error {
            panic!("no stacks: {error}");
        }
        Run {
            pause: snapshot.pause,
            total,
            stacks: snapshot.stacks.len(),
            stack_bytes: snapshot.stacks.iter().map(|s| s.stack.len()).sum(),
            stopped: snapshot
                .stacks
                .iter()
                .filter(|s| s.source == CaptureSource::Stopped)
                .count(),
        }
    }
}

fn report(threads: usize, spinners: usize, mut runs: Vec<Run>) {
    runs.sort_by_key(|r| r.pause);
    let median = &runs[runs.len() / 2];
    let (min, max) = (runs[0].pause, runs[runs.len() - 1].pause);
    let mut totals: Vec<Duration> = runs.iter().map(|r| r.total).collect();
    totals.sort();
    let stopped = runs.iter().map(|r| r.stopped).max().unwrap_or(0);
    println!(
        "{threads:>7}  {spinners:>8}  {:>13}  {:>19}  {:>13}  {:>6}  {:>11}  {stopped:>7}",
        format!("{:.2?}", median.pause),
        format!("{min:.2?}..{max:.2?}"),
        format!("{:.2?}", totals[totals.len() / 2]),
        median.stacks,
        median.stack_bytes,
    );
}

/// The target process, killed when the benchmark ends.
struct Target(Child);

impl Target {
    fn spawn(exe: &Path, threads: usize, spinners: usize) -> Target {
        let mut child = Command::new(exe)
            .args([threads.to_string(), spinners.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start target");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready");
        let target = Target(child);
        assert_eq!(thread_ids(target.pid()).expect("tasks").len(), threads);
        target
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn compile() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snapshot-bench");
    fs::create_dir_all(&dir).expect("create bench dir");
    let source = dir.join("target.c");
    let exe = dir.join("target");
    fs::write(&source, TARGET_C).expect("write source");
    let output = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("gcc not found ({e}): run scripts/setup to install it"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gcc failed:\n{stderr}");
    exe
}
