/* The target of scripts/bench-record: a busy two-thread C program with deep stacks that reports
 * its own throughput.
 *
 *   workload PROGRESS_FILE [MAX_SECONDS]
 *
 * Two worker threads run the same unit of work, leaf_work() (hash a 2 KiB block), in a loop:
 *   - "deep-worker" calls it at the bottom of a recursion 40..100 levels deep through three
 *     functions with 176-, 224- and 256-byte frames, i.e. ~9-22 KiB of stack and 45-105 frames:
 *     more than the 8 KiB perf copies by default, far less than the ~64 KiB the agent copies, and
 *     under the 127 frames perf script shows at most;
 *   - "flat-worker" calls it from a 3-frame stack (every profiler gets those right).
 * The main thread appends "<CLOCK_REALTIME ns> <units done by both workers> <process CPU ns>" to
 * PROGRESS_FILE every 100 ms, so the caller can compute units per second of wall time and per
 * second of the workload's own CPU time over any window (with and without a profiler attached)
 * from one run. CPU time (the scheduler's runtime, which includes the interrupts that take the
 * samples) makes the figure immune to other processes competing for the same core.
 * It exits after MAX_SECONDS (default 300), a safety net. Then it writes its own resource usage,
 * "<user s> <sys s> <voluntary cs> <involuntary cs>", to PROGRESS_FILE.rusage: a profiler that
 * launches it (samply) counts the workload's usage in its own wait4() figures, minus this.
 * With WORKLOAD_CPU=N in its environment it pins itself to CPU N first (a launching profiler
 * follows no `taskset` exec).
 *
 * Built with -O2 -fomit-frame-pointer -g, like release code: only DWARF CFI unwinding works.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BLOCK 2048
#define MIN_DEPTH 40
#define MAX_DEPTH 100

/* One counter per worker, each on its own cache line. */
static struct { _Alignas(64) atomic_uint_fast64_t units; } counters[2];

/* The unit of work: FNV-1a over a block, ~10 microseconds. noipa: GCC must not see it is pure
 * and hoist it out of the loops. */
__attribute__((noipa)) static uint64_t leaf_work(const unsigned char *p, uint64_t seed) {
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (int round = 0; round < 4; round++)
        for (size_t i = 0; i < BLOCK; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static unsigned char block[BLOCK];

/* Three mutually recursive functions, so the deep stacks are not one function repeated. Each has
 * a 160..240-byte local buffer that the compiler cannot drop (it is passed to the next level) and
 * uses the result after the call (no tail call). At the bottom, `units` units of work. */
__attribute__((noinline)) static uint64_t descend_a(int depth, int units, volatile unsigned char *prev);
__attribute__((noinline)) static uint64_t descend_b(int depth, int units, volatile unsigned char *prev);
__attribute__((noinline)) static uint64_t descend_c(int depth, int units, volatile unsigned char *prev);

__attribute__((noinline)) static uint64_t bottom(int units) {
    uint64_t h = 0;
    for (int i = 0; i < units; i++) h += leaf_work(block, (uint64_t)i);
    atomic_fetch_add_explicit(&counters[0].units, (uint64_t)units, memory_order_relaxed);
    return h;
}

#define DESCEND(self, next, size)                                                           \
    static uint64_t self(int depth, int units, volatile unsigned char *prev) {              \
        volatile unsigned char frame[size];                                                 \
        frame[depth % size] = (unsigned char)(prev ? prev[0] : depth);                      \
        uint64_t h = depth == 0 ? bottom(units) : next(depth - 1, units, frame);            \
        return h + frame[depth % size];                                                     \
    }
DESCEND(descend_a, descend_b, 160)
DESCEND(descend_b, descend_c, 200)
DESCEND(descend_c, descend_a, 240)

static volatile uint64_t sink;
static volatile int units_per_descent = 50; /* volatile: no constant-propagated clones */

static void *deep_worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "deep-worker");
    for (unsigned n = 0;; n++) {
        /* Depths cycle through 40..100 levels; 50 units at the bottom of each descent, so
         * nearly every sample lands at full depth. */
        int depth = MIN_DEPTH + (int)((n * 7u) % (MAX_DEPTH - MIN_DEPTH + 1));
        sink += descend_a(depth, units_per_descent, NULL);
    }
    return NULL;
}

__attribute__((noinline)) static void flat_loop(void) {
    for (uint64_t n = 0;; n++) {
        sink += leaf_work(block, n);
        atomic_fetch_add_explicit(&counters[1].units, 1, memory_order_relaxed);
    }
}

static void *flat_worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "flat-worker");
    flat_loop();
    return NULL;
}

static uint64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PROGRESS_FILE [MAX_SECONDS]\n", argv[0]);
        return 2;
    }
    FILE *progress = fopen(argv[1], "w");
    if (!progress) {
        perror(argv[1]);
        return 1;
    }
    int max_seconds = argc > 2 ? atoi(argv[2]) : 300;
    const char *cpu = getenv("WORKLOAD_CPU");
    if (cpu && *cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(cpu), &set);
        if (sched_setaffinity(0, sizeof set, &set)) perror("sched_setaffinity");
    }
    for (size_t i = 0; i < BLOCK; i++) block[i] = (unsigned char)(i * 31u);

    pthread_t t;
    if (pthread_create(&t, NULL, deep_worker, NULL) || pthread_create(&t, NULL, flat_worker, NULL)) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
    }
    uint64_t start = clock_ns(CLOCK_REALTIME);
    const struct timespec tick = {0, 100 * 1000 * 1000};
    while (clock_ns(CLOCK_REALTIME) - start < (uint64_t)max_seconds * 1000000000u) {
        nanosleep(&tick, NULL);
        uint64_t units = atomic_load_explicit(&counters[0].units, memory_order_relaxed) +
                         atomic_load_explicit(&counters[1].units, memory_order_relaxed);
        fprintf(progress, "%llu %llu %llu\n", (unsigned long long)clock_ns(CLOCK_REALTIME),
                (unsigned long long)units, (unsigned long long)clock_ns(CLOCK_PROCESS_CPUTIME_ID));
        fflush(progress);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char path[4096];
    snprintf(path, sizeof path, "%s.rusage", argv[1]);
    FILE *usage = fopen(path, "w");
    if (usage) {
        fprintf(usage, "%.3f %.3f %ld %ld\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
                ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_nvcsw, ru.ru_nivcsw);
        fclose(usage);
    }
    return 0;
}
