/* The targets of scripts/bench-waits: programs that wait a lot and report their own throughput.
 *
 *   waits pool PROGRESS_FILE MAX_SECONDS TASK_US BATCH
 *   waits pingpong PROGRESS_FILE MAX_SECONDS
 *
 * pool: a thread pool. 4 workers ("pool-worker") take tasks from a queue guarded by one mutex and
 *   two condition variables; a producer ("pool-producer") refills the queue with BATCH tasks once
 *   it has drained, preparing (a fifth of TASK_US each) and pushing them one at a time under the
 *   lock, then waits for it to drain again. Each task spins TASK_US microseconds of its thread's
 *   CPU time, a fifth of it while holding the queue's lock (the shared state a real task would
 *   update), so the lock is contended as well as the condition variables waited on.
 *   Every refill wakes the workers and every drain puts them (and the producer) to sleep: the
 *   context-switch rate follows TASK_US * BATCH. Unit: one task done.
 * pingpong: two threads ("ping", "pong") pass one byte back and forth through two pipes, the
 *   extreme case of context switching (two switches per round trip on one CPU). Unit: one round
 *   trip.
 *
 * The main thread appends "<CLOCK_REALTIME ns> <units> <process CPU ns> <context switches>
 * <contended lock acquisitions>" to PROGRESS_FILE every 100 ms (switches: voluntary +
 * involuntary, from getrusage(RUSAGE_SELF), all threads), so the caller can compute units and
 * switches per second of wall time and per second of the process's CPU time over any window,
 * recorded or not, from one run. It exits after MAX_SECONDS, a safety net.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define QUEUE_CAPACITY 4096

static _Alignas(64) atomic_uint_fast64_t units_done;
static _Alignas(64) atomic_uint_fast64_t contended;

static uint64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- CPU work without a clock call per microsecond: spin_loops(n) is calibrated once. ---- */

static volatile uint64_t sink;
static double loops_per_us;

__attribute__((noinline)) static void spin_loops(uint64_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (uint64_t i = 0; i < n; i++) h = (h ^ i) * 1099511628211ULL;
    sink += h;
}

/* Loops per microsecond of this thread's CPU time (immune to preemption by other load). */
static void calibrate(void) {
    uint64_t n = 100000, spent = 0;
    while (spent < 20000000) { /* at least 20 ms of CPU */
        n *= 2;
        uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        spin_loops(n);
        spent = clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    }
    loops_per_us = (double)n / ((double)spent / 1000.0);
}

/* ---- pool ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* workers wait here */
    pthread_cond_t drained;   /* the producer waits here */
    unsigned pending;         /* tasks in the queue */
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static uint64_t task_loops, locked_loops;
static unsigned batch;

/* Takes the queue's lock, counting the acquisitions that found it held. */
static void lock_queue(void) {
    if (pthread_mutex_trylock(&queue.lock) == EBUSY) {
        atomic_fetch_add_explicit(&contended, 1, memory_order_relaxed);
        pthread_mutex_lock(&queue.lock);
    }
}

__attribute__((noinline)) static void run_task(void) { spin_loops(task_loops - locked_loops); }

static void *pool_worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "pool-worker");
    for (;;) {
        lock_queue();
        while (queue.pending == 0) pthread_cond_wait(&queue.not_empty, &queue.lock);
        queue.pending--;
        spin_loops(locked_loops); /* the task's critical section */
        if (queue.pending == 0) pthread_cond_signal(&queue.drained);
        pthread_mutex_unlock(&queue.lock);
        run_task();
        atomic_fetch_add_explicit(&units_done, 1, memory_order_relaxed);
    }
    return NULL;
}

static void *pool_producer(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "pool-producer");
    for (;;) {
        lock_queue();
        while (queue.pending > 0) pthread_cond_wait(&queue.drained, &queue.lock);
        /* Tasks are prepared and pushed one at a time under the lock, each waking a worker:
         * a woken worker that preempts the producer finds the lock held. */
        for (unsigned i = 0; i < batch; i++) {
            spin_loops(locked_loops);
            queue.pending++;
            pthread_cond_signal(&queue.not_empty);
        }
        pthread_mutex_unlock(&queue.lock);
    }
    return NULL;
}

static int start_pool(int argc, char **argv) {
    if (argc < 6) return -1;
    double task_us = atof(argv[4]);
    batch = (unsigned)atoi(argv[5]);
    if (task_us <= 0 || batch == 0 || batch > QUEUE_CAPACITY) return -1;
    calibrate();
    task_loops = (uint64_t)(task_us * loops_per_us);
    locked_loops = task_loops / 5;
    pthread_t t;
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&t, NULL, pool_worker, NULL)) return -1;
    return pthread_create(&t, NULL, pool_producer, NULL) ? -1 : 0;
}

/* ---- pingpong ---- */

static int ping_pipe[2], pong_pipe[2];

static void *pong(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "pong");
    char byte;
    for (;;) {
        if (read(ping_pipe[0], &byte, 1) != 1 || write(pong_pipe[1], &byte, 1) != 1) exit(1);
    }
    return NULL;
}

static void *ping(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "ping");
    char byte = 'x';
    for (;;) {
        if (write(ping_pipe[1], &byte, 1) != 1 || read(pong_pipe[0], &byte, 1) != 1) exit(1);
        atomic_fetch_add_explicit(&units_done, 1, memory_order_relaxed);
    }
    return NULL;
}

static int start_pingpong(void) {
    if (pipe(ping_pipe) || pipe(pong_pipe)) return -1;
    pthread_t t;
    if (pthread_create(&t, NULL, pong, NULL)) return -1;
    return pthread_create(&t, NULL, ping, NULL) ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s pool PROGRESS_FILE MAX_SECONDS TASK_US BATCH\n"
                        "       %s pingpong PROGRESS_FILE MAX_SECONDS\n", argv[0], argv[0]);
        return 2;
    }
    FILE *progress = fopen(argv[2], "w");
    if (!progress) {
        perror(argv[2]);
        return 1;
    }
    int max_seconds = atoi(argv[3]);
    int started = strcmp(argv[1], "pool") == 0       ? start_pool(argc, argv)
                  : strcmp(argv[1], "pingpong") == 0 ? start_pingpong()
                                                     : -1;
    if (started) {
        fprintf(stderr, "%s: bad arguments or cannot start its threads\n", argv[1]);
        return 2;
    }
    uint64_t start = clock_ns(CLOCK_REALTIME);
    const struct timespec tick = {0, 100 * 1000 * 1000};
    while (clock_ns(CLOCK_REALTIME) - start < (uint64_t)max_seconds * 1000000000u) {
        nanosleep(&tick, NULL);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(progress, "%llu %llu %llu %ld %llu\n", (unsigned long long)clock_ns(CLOCK_REALTIME),
                (unsigned long long)atomic_load_explicit(&units_done, memory_order_relaxed),
                (unsigned long long)clock_ns(CLOCK_PROCESS_CPUTIME_ID), ru.ru_nvcsw + ru.ru_nivcsw,
                (unsigned long long)atomic_load_explicit(&contended, memory_order_relaxed));
        fflush(progress);
    }
    return 0;
}
