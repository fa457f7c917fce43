//! Snapshots of real processes: small C programs whose threads sit in known places.
//!
//! Besides checking what a snapshot reports, every test checks that the target is left exactly as
//! it was found: no thread stopped, no tracer attached, no signal lost, progress continuing.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rprof_agent::snapshot::{
    take_snapshot, thread_ids, thread_info, CaptureSource, Snapshot, SnapshotError,
    SnapshotOptions, StackCapture, ThreadInfo, ThreadState,
};

/// Five named threads, each sitting in a known place, and a main thread in pause().
const BLOCKED_THREADS_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];
static volatile unsigned long spins;

static void *spinner(void *arg) {
    pthread_setname_np(pthread_self(), "spinner");
    for (;;) spins++;
    return arg;
}
static void *mutex_wait(void *arg) {
    pthread_setname_np(pthread_self(), "mutex-wait");
    pthread_mutex_lock(&held);
    return arg;
}
static void *cond_wait(void *arg) {
    pthread_setname_np(pthread_self(), "cond-wait");
    pthread_mutex_lock(&cond_lock);
    for (;;) pthread_cond_wait(&never, &cond_lock);
    return arg;
}
static void *sleeper(void *arg) {
    pthread_setname_np(pthread_self(), "sleeper");
    for (;;) {
        struct timespec hour = {3600, 0};
        nanosleep(&hour, NULL);
    }
    return arg;
}
static void *pipe_reader(void *arg) {
    pthread_setname_np(pthread_self(), "pipe-reader");
    char c;
    for (;;) if (read(pipe_fds[0], &c, 1) < 0) return arg;
    return arg;
}

int main(void) {
    void *(*bodies[])(void *) = {spinner, mutex_wait, cond_wait, sleeper, pipe_reader};
    pthread_t thread;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pipe(pipe_fds) != 0) return 1;
    pthread_mutex_lock(&held);
    for (unsigned i = 0; i < sizeof bodies / sizeof *bodies; i++)
        if (pthread_create(&thread, NULL, bodies[i], NULL) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"#;

/// argv[1] threads doing a bit of everything (sleeping, spinning, waiting on a condition variable,
/// reading a pipe, creating and ending threads) and a counter thread that writes an increasing
/// number to the file argv[2] every millisecond, so a test can see the process make progress.
const BUSY_THREADS_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tick = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];

static void *short_lived(void *arg) { return arg; }

static void *worker(void *arg) {
    long kind = (long)arg % 5;
    char c;
    pthread_t child;
    for (;;) {
        if (kind == 0) usleep(500);
        if (kind == 1) {
            pthread_mutex_lock(&lock);
            pthread_cond_wait(&tick, &lock);
            pthread_mutex_unlock(&lock);
        }
        if (kind == 2) for (volatile int i = 0; i < 100000; i++) {}
        if (kind == 3 && read(pipe_fds[0], &c, 1) < 0) return arg;
        if (kind == 4 && pthread_create(&child, NULL, short_lived, NULL) == 0)
            pthread_join(child, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int threads = atoi(argv[1]);
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (out < 0 || pipe(pipe_fds) != 0) return 1;
    pthread_t thread;
    for (long i = 0; i < threads - 1; i++)
        if (pthread_create(&thread, NULL, worker, (void *)i) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    char line[32];
    for (unsigned long counter = 0;; counter++) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&tick);
        pthread_mutex_unlock(&lock);
        int len = snprintf(line, sizeof line, "%20lu\n", counter);
        if (pwrite(out, line, len, 0) != len) return 1;
        usleep(1000);
    }
}
"#;

/// Threads blocked in various places while a sender thread queues real-time signals to the
/// process; prints how many the handler received once all were sent and handled (or 2 s passed).
const SIGNALS_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static long received;

static void on_signal(int sig) { (void)sig; __atomic_fetch_add(&received, 1, __ATOMIC_SEQ_CST); }

static void *blocked(void *arg) {
    for (;;) {
        struct timespec t = {0, 200000};
        nanosleep(&t, NULL);
    }
    return arg;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long to_send = atol(argv[1]);
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN + 1, &action, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pthread_t thread;
    for (int i = 0; i < 8; i++) pthread_create(&thread, NULL, blocked, NULL);
    printf("ready\n");
    fflush(stdout);
    /* Give the test time to start its snapshot loop before the first signal. */
    usleep(100000);
    union sigval value = {0};
    for (long i = 0; i < to_send; i++) {
        if (sigqueue(getpid(), SIGRTMIN + 1, value) != 0) return 1;
        usleep(200);
    }
    for (int waited = 0; waited < 2000 && __atomic_load_n(&received, __ATOMIC_SEQ_CST) < to_send; waited++)
        usleep(1000);
    printf("sent %ld received %ld\n", to_send, __atomic_load_n(&received, __ATOMIC_SEQ_CST));
    fflush(stdout);
    for (;;) pause();
}
"#;

/// A "vforker" thread that spends its life in vfork(), where not even ptrace can stop it (the
/// kernel waits for the child in uninterruptible sleep); its children live 300 ms each. Plus a
/// thread in nanosleep that can be stopped.
const VFORK_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *vforker(void *arg) {
    pthread_setname_np(pthread_self(), "vforker");
    for (;;) {
        pid_t child = vfork();
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            usleep(300000);
            _exit(0);
        }
        if (child < 0 || waitpid(child, NULL, 0) < 0) return arg;
    }
}

static void *sleeper(void *arg) {
    pthread_setname_np(pthread_self(), "sleeper");
    for (;;) {
        struct timespec hour = {3600, 0};
        nanosleep(&hour, NULL);
    }
    return arg;
}

int main(void) {
    pthread_t thread;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pthread_create(&thread, NULL, vforker, NULL) != 0) return 1;
    if (pthread_create(&thread, NULL, sleeper, NULL) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"#;

/// The main thread exits with pthread_exit() and stays a zombie while a "sleeper" thread lives on
/// (for a minute at most, so that it cannot outlive a crashed test for long).
const ZOMBIE_LEADER_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *sleeper(void *arg) {
    pthread_setname_np(pthread_self(), "sleeper");
    struct timespec minute = {60, 0};
    nanosleep(&minute, NULL);
    exit(0);
    return arg;
}

int main(void) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, sleeper, NULL) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    pthread_exit(NULL);
}
"#;

const BLOCKED_NAMES: [&str; 4] = ["mutex-wait", "cond-wait", "sleeper", "pipe-reader"];

/// The system calls each blocked thread of BLOCKED_THREADS_C sits in. glibc implements
/// nanosleep() with the clock_nanosleep system call.
fn expected_syscalls(name: &str) -> &'static [&'static str] {
    match name {
        "mutex-wait" | "cond-wait" => &["futex"],
        "sleeper" => &["nanosleep", "clock_nanosleep"],
        "pipe-reader" => &["read"],
        other => panic!("no expectation for {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshot_shows_every_thread_where_it_waits() {
    let target = Target::spawn(&program("blocked_threads", BLOCKED_THREADS_C), &[]);
    let pid = target.pid();
    wait_until_blocked(pid);

    let snapshot = take_snapshot(pid, &SnapshotOptions::default()).unwrap();

    assert_eq!(snapshot.pid, pid);
    assert_eq!(snapshot.stack_error, None);
    assert!(
        snapshot.pause < Duration::from_secs(1),
        "pause {:?}",
        snapshot.pause
    );
    assert_eq!(snapshot.threads.len(), 6, "{:#?}", snapshot.threads);
    assert_eq!(snapshot.threads[0].tid, pid, "main thread first");
    let spinner = thread_named(&snapshot, "spinner");
    assert_eq!(spinner.state, ThreadState::Running);
    let maps = Maps::read(pid);
    for name in BLOCKED_NAMES {
        let thread = thread_named(&snapshot, name);
        assert_blocked_as_expected(thread);
        let stack = stack_of(&snapshot, thread.tid);
        assert_stack_is_real(stack, &maps, target.exe());
    }
    // Stopping also captures running threads: the spinner is in the main binary.
    let spinner_stack = stack_of(&snapshot, spinner.tid);
    assert!(
        maps.is_code_of(spinner_stack.regs.ip, target.exe()),
        "{spinner_stack:?}"
    );
    assert_stack_is_real(spinner_stack, &maps, target.exe());
    assert_left_running_and_untraced(pid);
}

#[test]
fn nonblocking_snapshot_copies_blocked_stacks_without_stopping_anything() {
    let target = Target::spawn(&program("blocked_threads", BLOCKED_THREADS_C), &[]);
    let pid = target.pid();
    wait_until_blocked(pid);
    let opts = SnapshotOptions {
        nonblocking: true,
        ..SnapshotOptions::default()
    };

    let snapshot = take_snapshot(pid, &opts).unwrap();

    assert_eq!(snapshot.pause, Duration::ZERO);
    assert_eq!(snapshot.stack_error, None);
    // Running threads are sampled, not stopped: the spinner too has its stack.
    let spinner = thread_named(&snapshot, "spinner");
    let maps = Maps::read(pid);
    let spinner_stack = stack_of(&snapshot, spinner.tid);
    assert_eq!(
        spinner_stack.source,
        CaptureSource::Sampled,
        "{spinner_stack:?}"
    );
    assert!(
        maps.is_code_of(spinner_stack.regs.ip, target.exe()),
        "{spinner_stack:?}"
    );
    assert_stack_is_real(spinner_stack, &maps, target.exe());
    for name in BLOCKED_NAMES {
        let thread = thread_named(&snapshot, name);
        assert_blocked_as_expected(thread);
        let stack = stack_of(&snapshot, thread.tid);
        let syscall = thread.syscall.as_ref().unwrap();
        assert_eq!((stack.regs.sp, stack.regs.ip), (syscall.sp, syscall.pc));
        assert_stack_is_real(stack, &maps, target.exe());
    }
    assert_left_running_and_untraced(pid);
}

#[test]
fn a_thread_that_could_not_stop_is_read_as_it_waits_and_never_stopped() {
    let target = Target::spawn(&program("vfork", VFORK_C), &[]);
    let pid = target.pid();
    let settled = || {
        let threads: Vec<ThreadInfo> = thread_ids(pid)
            .unwrap()
            .into_iter()
            .filter_map(|tid| thread_info(pid, tid))
            .collect();
        let vforking = |t: &ThreadInfo| t.name == "vforker" && t.state == ThreadState::DiskSleep;
        let sleeping = |t: &ThreadInfo| t.name == "sleeper" && t.syscall.is_some();
        threads.iter().any(vforking) && threads.iter().any(sleeping)
    };
    wait_for(Duration::from_secs(5), "vforker in vfork", settled);
    let opts = SnapshotOptions {
        stop_timeout: Duration::from_millis(50),
        ..SnapshotOptions::default()
    };

    let snapshot = take_snapshot(pid, &opts).unwrap();

    let vforker = thread_named(&snapshot, "vforker");
    let sleeper = thread_named(&snapshot, "sleeper");
    assert_eq!(snapshot.stack_error, None);
    // A thread in vfork would not stop for ptrace (uninterruptible); blocked in the kernel, its
    // stack is read as it waits instead, and nothing is stopped at all.
    let vforker_stack = stack_of(&snapshot, vforker.tid);
    assert_eq!(
        vforker_stack.source,
        CaptureSource::Blocked,
        "{snapshot:#?}"
    );
    assert!(!vforker_stack.stack.is_empty());
    assert!(!stack_of(&snapshot, sleeper.tid).stack.is_empty());
    assert_eq!(snapshot.pause, Duration::ZERO);
    // Nothing may stop it later, when its vfork child exits: watch it through several
    // children's lifetimes.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(1) {
        assert!(
            !all_states(pid).contains(&'t'),
            "a thread entered tracing stop"
        );
        assert!(all_tracer_pids(pid).iter().all(|&tracer| tracer == 0));
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn snapshot_of_a_process_whose_main_thread_exited_captures_the_others() {
    let target = Target::spawn(&program("zombie_leader", ZOMBIE_LEADER_C), &[]);
    let pid = target.pid();
    let settled = || {
        let leader = thread_info(pid, pid).map(|t| t.state);
        let threads = thread_ids(pid)
            .unwrap()
            .into_iter()
            .filter_map(|t| thread_info(pid, t));
        let sleeping = |t: &ThreadInfo| t.name == "sleeper" && t.syscall.is_some();
        leader == Some(ThreadState::Zombie) && threads.into_iter().any(|t| sleeping(&t))
    };
    wait_for(Duration::from_secs(5), "zombie main thread", settled);

    let snapshot = take_snapshot(pid, &SnapshotOptions::default()).unwrap();

    assert_eq!(snapshot.stack_error, None);
    let sleeper = thread_named(&snapshot, "sleeper");
    assert!(!stack_of(&snapshot, sleeper.tid).stack.is_empty());
    assert!(
        snapshot.stacks.iter().all(|s| s.tid != pid),
        "a zombie has no stack"
    );
    assert!(
        snapshot.pause < Duration::from_secs(1),
        "{:?}",
        snapshot.pause
    );
    assert_left_running_and_untraced(pid);
}

#[test]
fn snapshot_of_a_stopped_process_leaves_it_stopped() {
    let target = Target::spawn(&program("blocked_threads", BLOCKED_THREADS_C), &[]);
    let pid = target.pid();
    wait_until_blocked(pid);
    send_signal(pid, "STOP");
    let all_stopped = || all_states(pid).iter().all(|&state| state == 'T');
    wait_for(Duration::from_secs(5), "every thread stopped", all_stopped);

    let snapshot = take_snapshot(pid, &SnapshotOptions::default()).unwrap();

    assert_eq!(snapshot.stack_error, None);
    assert_eq!(
        snapshot.stacks.len(),
        6,
        "a group-stopped thread can still be captured"
    );
    // Detaching puts each thread back into the group stop, after a brief wake-up.
    wait_for(
        Duration::from_secs(2),
        "threads back in group stop",
        all_stopped,
    );
    thread::sleep(Duration::from_millis(50));
    assert!(all_stopped(), "a stopped process must stay stopped");
    assert!(all_tracer_pids(pid).iter().all(|&tracer| tracer == 0));
    send_signal(pid, "CONT");
    assert_left_running_and_untraced(pid);
}

#[test]
fn signals_arriving_during_snapshots_are_all_delivered() {
    // ~1 s of signals (one every ~200 µs) alone: long enough that several snapshots overlap
    // them also when the other tests of this binary load the machine (with 1000, ~0.3 s, one
    // CI run saw a single snapshot).
    const SIGNALS: usize = 4000;
    let mut target = Target::spawn(&program("signals", SIGNALS_C), &[&SIGNALS.to_string()]);
    let pid = target.pid();
    let done = AtomicBool::new(false);
    let (report, snapshots) = thread::scope(|scope| {
        let looper = scope.spawn(|| {
            let mut count = 0;
            while !done.load(Ordering::Relaxed) && take_snapshot(pid, &Default::default()).is_ok() {
                count += 1;
            }
            count
        });
        let report = target.try_next_line(Duration::from_secs(30));
        // Before any assertion: the scope waits for the looper, even when panicking.
        done.store(true, Ordering::Relaxed);
        (report, looper.join().unwrap())
    });
    let expected = format!("sent {SIGNALS} received {SIGNALS}");
    assert_eq!(report.as_deref(), Some(expected.as_str()));
    println!("{snapshots} snapshots during the signals");
    // A snapshot may wait up to 1 s for a running thread to be sampled: a few overlap.
    assert!(
        snapshots >= 3,
        "only {snapshots} snapshots overlapped the signals"
    );
    assert_left_running_and_untraced(pid);
}

#[test]
fn snapshots_of_a_process_creating_and_ending_threads_succeed() {
    let dir = TempDir::new("churn-test");
    let counter = dir.0.join("counter");
    let args = ["20", counter.to_str().unwrap()];
    let target = Target::spawn(&program("busy_threads", BUSY_THREADS_C), &args);
    let pid = target.pid();
    for _ in 0..50 {
        let snapshot = take_snapshot(pid, &SnapshotOptions::default()).unwrap();
        assert_eq!(snapshot.stack_error, None);
        assert!(
            snapshot.stacks.len() >= 19,
            "{} stacks",
            snapshot.stacks.len()
        );
        assert!(
            snapshot.threads.len() >= 19,
            "{} threads",
            snapshot.threads.len()
        );
    }
    assert_left_running_and_untraced(pid);
    assert_makes_progress(&counter, "after 50 snapshots");
}

#[test]
fn killing_the_agent_mid_snapshot_leaves_the_target_running() {
    let dir = TempDir::new("kill-test");
    let counter = dir.0.join("counter");
    let counter_arg = counter.to_str().unwrap();
    let target = Target::spawn(
        &program("busy_threads", BUSY_THREADS_C),
        &["50", counter_arg],
    );
    let pid = target.pid();
    wait_for(Duration::from_secs(5), "50 threads", || {
        thread_ids(pid).unwrap().len() >= 50
    });
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut random = Lcg(u64::from(seed));
    for round in 0..40 {
        let mut agent = SnapshotLoop::spawn(pid);
        thread::sleep(Duration::from_micros(random.below(30_000)));
        agent.kill();
        let context = format!("round {round}, seed {seed}");
        assert_left_running_and_untraced(pid);
        assert_makes_progress(&counter, &context);
    }
}

/// Not a test on its own: the body of the agent process that the kill test spawns (this test
/// binary, re-executed with `SNAPSHOT_LOOP_PID` set), which takes snapshots until killed.
#[test]
fn snapshot_loop_helper() {
    let Ok(pid) = std::env::var(SNAPSHOT_LOOP_PID) else {
        return;
    };
    let pid: u32 = pid.parse().unwrap();
    println!("{LOOPING}");
    // Stops by itself when the target is gone, so that it cannot outlive a crashed test.
    while !matches!(
        take_snapshot(pid, &SnapshotOptions::default()),
        Err(SnapshotError::NoSuchProcess(_))
    ) {}
}

#[test]
fn snapshot_without_ptrace_permission_lists_threads_and_says_why() {
    if !running_as_root() {
        eprintln!("needs root, to run the agent as an unprivileged user against its target");
        return;
    }
    let target = Target::spawn(&program("blocked_threads", BLOCKED_THREADS_C), &[]);
    let pid = target.pid();
    wait_until_blocked(pid);
    // setuid away from root drops every capability, CAP_SYS_PTRACE included.
    let unprivileged: &[&str] = &[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let output = helper_command(Some(unprivileged), "snapshot_once_helper")
        .env(SNAPSHOT_ONCE_PID, pid.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reports: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once(REPORT).map(|(_, report)| report))
        .collect();
    assert_eq!(reports.len(), 2, "{stdout}");
    for report in reports {
        assert!(report.contains("threads=6 stacks=0 error="), "{report}");
        assert!(
            report.contains("no ptrace access") && report.contains("CAP_SYS_PTRACE"),
            "{report}"
        );
    }
    assert_left_running_and_untraced(pid);
}

/// Not a test on its own: the body of the unprivileged agent process that the permission test
/// spawns, which reports one snapshot in each mode.
#[test]
fn snapshot_once_helper() {
    let Ok(pid) = std::env::var(SNAPSHOT_ONCE_PID) else {
        return;
    };
    let pid: u32 = pid.parse().unwrap();
    for nonblocking in [false, true] {
        let opts = SnapshotOptions {
            nonblocking,
            ..SnapshotOptions::default()
        };
        let snapshot = take_snapshot(pid, &opts).unwrap();
        println!(
            "{REPORT}threads={} stacks={} error={}",
            snapshot.threads.len(),
            snapshot.stacks.len(),
            snapshot.stack_error.unwrap_or_default()
        );
    }
}

#[test]
fn snapshot_of_a_missing_process_is_no_such_process() {
    for pid in [0, 0x7fff_fff0, u32::MAX] {
        let result = take_snapshot(pid, &SnapshotOptions::default());
        assert!(
            matches!(result, Err(SnapshotError::NoSuchProcess(p)) if p == pid),
            "{result:?}"
        );
    }
}

#[test]
fn snapshot_of_a_kernel_thread_is_refused() {
    // kthreadd is PID 2 on the host; inside a PID namespace no kernel thread is visible.
    let Some(kthread) = (1..=200).find(|&pid| is_kernel_thread(pid)) else {
        eprintln!("no kernel thread visible in this PID namespace");
        return;
    };
    let result = take_snapshot(kthread, &SnapshotOptions::default());
    assert!(
        matches!(result, Err(SnapshotError::KernelThread(p)) if p == kthread),
        "{result:?}"
    );
}

#[test]
fn snapshot_of_its_own_process_explains_why_there_are_no_stacks() {
    let snapshot = take_snapshot(std::process::id(), &SnapshotOptions::default()).unwrap();
    assert!(snapshot.stacks.is_empty());
    assert!(!snapshot.threads.is_empty());
    assert!(snapshot.stack_error.unwrap().contains("own process"));
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

fn thread_named<'a>(snapshot: &'a Snapshot, name: &str) -> &'a ThreadInfo {
    let found = snapshot.threads.iter().find(|t| t.name == name);
    found.unwrap_or_else(|| panic!("no thread named {name} in {:#?}", snapshot.threads))
}

fn stack_of(snapshot: &Snapshot, tid: u32) -> &StackCapture {
    let found = snapshot.stacks.iter().find(|s| s.tid == tid);
    found.unwrap_or_else(|| panic!("no stack for thread {tid} in {snapshot:#?}"))
}

fn assert_blocked_as_expected(thread: &ThreadInfo) {
    assert_eq!(thread.state, ThreadState::Sleeping, "{thread:?}");
    let syscall = thread
        .syscall
        .as_ref()
        .unwrap_or_else(|| panic!("{thread:?}"));
    let name = syscall
        .name
        .unwrap_or_else(|| panic!("unnamed syscall: {thread:?}"));
    assert!(
        expected_syscalls(&thread.name).contains(&name),
        "{thread:?}"
    );
    assert!(thread.wchan.is_some(), "{thread:?}");
}

/// The stack pointer is in a stack (anonymous read-write memory), the copy is not empty, and it
/// holds at least one return address into libc or the program.
fn assert_stack_is_real(stack: &StackCapture, maps: &Maps, exe: &Path) {
    let mapping = maps.containing(stack.regs.sp);
    let mapping = mapping.unwrap_or_else(|| panic!("sp outside any mapping: {stack:?}"));
    assert!(mapping.is_stack(), "sp in {mapping:?}");
    assert!(!stack.stack.is_empty(), "{stack:?}");
    assert!(stack.stack.len() as u64 <= mapping.end - stack.regs.sp);
    let has_return_address = stack
        .stack
        .chunks_exact(8)
        .map(|word| u64::from_le_bytes(word.try_into().unwrap()))
        .any(|word| maps.is_code_of(word, exe) || maps.is_libc_code(word));
    assert!(
        has_return_address,
        "no return address in the stack of {}",
        stack.tid
    );
}

/// No thread in tracing stop or job-control stop, and no tracer attached. Waits a little: a thread
/// released by the kernel may need a moment to be scheduled.
fn assert_left_running_and_untraced(pid: u32) {
    wait_for(
        Duration::from_secs(2),
        "no thread stopped or traced",
        || {
            let states = all_states(pid);
            let tracers = all_tracer_pids(pid);
            !states.iter().any(|s| matches!(s, 't' | 'T')) && tracers.iter().all(|&t| t == 0)
        },
    );
}

fn assert_makes_progress(counter: &Path, context: &str) {
    let before = read_counter(counter);
    wait_for(
        Duration::from_secs(5),
        &format!("progress ({context})"),
        || read_counter(counter) > before + 3,
    );
}

// ---------------------------------------------------------------------------------------------
// Reading the target from the outside
// ---------------------------------------------------------------------------------------------

/// Waits until the threads of BLOCKED_THREADS_C have named themselves and the blocked ones sit in
/// their system calls.
fn wait_until_blocked(pid: u32) {
    wait_for(Duration::from_secs(10), "threads blocked", || {
        let threads: Vec<ThreadInfo> = thread_ids(pid)
            .unwrap()
            .into_iter()
            .filter_map(|tid| thread_info(pid, tid))
            .collect();
        let spinner_named = threads.iter().any(|t| t.name == "spinner");
        spinner_named
            && BLOCKED_NAMES.iter().all(|&name| {
                threads.iter().any(|t| {
                    let syscall = t.syscall.as_ref().and_then(|s| s.name);
                    t.name == name && syscall.is_some_and(|s| expected_syscalls(name).contains(&s))
                })
            })
    });
}

fn all_states(pid: u32) -> Vec<char> {
    task_files(pid, "stat")
        .iter()
        .filter_map(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim().chars().next())
        })
        .collect()
}

fn all_tracer_pids(pid: u32) -> Vec<u32> {
    task_files(pid, "status")
        .iter()
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("TracerPid:"))?;
            line["TracerPid:".len()..].trim().parse().ok()
        })
        .collect()
}

/// The contents of /proc/PID/task/*/NAME, for the threads that still exist.
fn task_files(pid: u32, name: &str) -> Vec<String> {
    let tids = thread_ids(pid).unwrap();
    let read = |tid| fs::read_to_string(format!("/proc/{pid}/task/{tid}/{name}")).ok();
    tids.into_iter().filter_map(read).collect()
}

/// Whether the effective uid (second field of `Uid:` in /proc/self/status) is 0.
fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid_line.split_whitespace().nth(2) == Some("0")
}

fn is_kernel_thread(pid: u32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let flags = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6));
    flags
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|f| f & PF_KTHREAD != 0)
}

fn read_counter(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

#[derive(Debug)]
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    path: String,
}

impl Mapping {
    /// Thread stacks are anonymous read-write mappings; the main thread's is `[stack]`.
    fn is_stack(&self) -> bool {
        self.perms.starts_with("rw") && (self.path.is_empty() || self.path == "[stack]")
    }

    fn is_code(&self) -> bool {
        self.perms.contains('x')
    }
}

struct Maps(Vec<Mapping>);

impl Maps {
    fn read(pid: u32) -> Maps {
        let text = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        Maps(text.lines().map(parse_mapping).collect())
    }

    fn containing(&self, addr: u64) -> Option<&Mapping> {
        self.0.iter().find(|m| m.start <= addr && addr < m.end)
    }

    fn is_code_of(&self, addr: u64, file: &Path) -> bool {
        self.containing(addr)
            .is_some_and(|m| m.is_code() && Path::new(&m.path) == file)
    }

    fn is_libc_code(&self, addr: u64) -> bool {
        self.containing(addr)
            .is_some_and(|m| m.is_code() && m.path.contains("/libc.so"))
    }
}

fn parse_mapping(line: &str) -> Mapping {
    let fields: Vec<&str> = line.splitn(6, ' ').collect();
    let (start, end) = fields[0].split_once('-').unwrap();
    Mapping {
        start: u64::from_str_radix(start, 16).unwrap(),
        end: u64::from_str_radix(end, 16).unwrap(),
        perms: fields[1].to_owned(),
        path: fields.get(5).map_or("", |p| p.trim()).to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A target process, killed when the test ends, passes or fails.
struct Target {
    child: Child,
    exe: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl Target {
    /// Starts `exe` and waits for it to print "ready".
    fn spawn(exe: &Path, args: &[&str]) -> Target {
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let lines = forward_lines(child.stdout.take().unwrap());
        let mut target = Target {
            child,
            exe: exe.to_owned(),
            lines,
        };
        let first = target.try_next_line(Duration::from_secs(10));
        assert_eq!(first.as_deref(), Some("ready"), "from {}", exe.display());
        target
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exe(&self) -> &Path {
        &self.exe
    }

    fn try_next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a child's stdout on a thread of its own, so that waiting for a line can time out.
fn forward_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

const SNAPSHOT_LOOP_PID: &str = "SNAPSHOT_LOOP_PID";
const SNAPSHOT_ONCE_PID: &str = "SNAPSHOT_ONCE_PID";
const REPORT: &str = "snapshot report: ";
const LOOPING: &str = "snapshot loop running";

/// This test binary re-executed as an agent that takes snapshots of a PID in a loop.
struct SnapshotLoop {
    child: Child,
}

impl SnapshotLoop {
    fn spawn(pid: u32) -> SnapshotLoop {
        let mut child = helper_command(None, "snapshot_loop_helper")
            .env(SNAPSHOT_LOOP_PID, pid.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = forward_lines(child.stdout.take().unwrap());
        let mut helper = SnapshotLoop { child };
        let started = Instant::now();
        // libtest prints "test snapshot_loop_helper ... " on the same line first.
        while !lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .ends_with(LOOPING)
        {
            assert!(started.elapsed() < Duration::from_secs(10));
        }
        helper.assert_alive();
        helper
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "snapshot loop exited"
        );
    }

    /// SIGKILL, then reap: once reaped, the kernel has finished releasing its tracees.
    fn kill(&mut self) {
        self.assert_alive();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for SnapshotLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This test binary, re-executed to run only the helper "test" `name`, optionally behind a
/// launcher (such as setpriv).
fn helper_command(launcher: Option<&[&str]>, name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut command = match launcher {
        Some([program, args @ ..]) => {
            let mut command = Command::new(program);
            command.args(args).arg(exe);
            command
        }
        _ => Command::new(exe),
    };
    command.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    command
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal} {pid}");
}

// ---------------------------------------------------------------------------------------------
// Building the C programs
// ---------------------------------------------------------------------------------------------

/// Compiles a C program once per test run into the target directory and returns its path.
fn program(name: &str, source: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = compile(name, source);
    built.push((name.to_owned(), path.clone()));
    path
}

fn compile(name: &str, source: &str) -> PathBuf {
    let dir = scratch_dir("programs");
    let source_path = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    // Build under a unique name and rename: other test processes may build the same program.
    let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
    fs::write(&source_path, source).unwrap();
    let output = Command::new("gcc")
        .args(["-O2", "-g", "-pthread", "-o"])
        .arg(&partial)
        .arg(&source_path)
        .output()
        .unwrap_or_else(|e| panic!("gcc not found ({e}): run scripts/setup to install it"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gcc failed for {name}:\n{stderr}");
    fs::rename(&partial, &exe).unwrap();
    exe
}

/// A directory of this test process, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(scratch_dir(&format!("{name}-{}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A directory under the target directory that cargo provides for integration tests.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("snapshot-tests")
        .join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// A small pseudo-random generator for kill delays, reproducible from the printed seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}
