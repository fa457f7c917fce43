/* The targets of scripts/bench-malloc: programs that allocate, reporting their own throughput.
 *
 *   malloc tight PROGRESS_FILE MAX_SECONDS
 *   malloc typical PROGRESS_FILE MAX_SECONDS [TASK_US]
 *
 * tight: one thread ("tight") does malloc(64) and free() in a loop, as fast as it can: the
 *   extreme case (>= 10 M pairs per second without a profiler on a current x86 core). Unit: one
 *   malloc/free pair.
 * typical: one thread ("typical") does tasks of real work with a few allocations each, like a
 *   request handler: each task mallocs a document of 256 B to 4 KiB, fills it, hashes it over
 *   and over for about TASK_US (default 250) microseconds of CPU, mallocs a 48-byte record of
 *   the result into a table of the 4096 latest ones (freeing the record it evicts, and the
 *   document). With the default, ~4 000 tasks and ~8 000 mallocs per second. Unit: one task.
 *
 * The main thread appends "<CLOCK_REALTIME ns> <units> <process CPU ns> <mallocs>" to
 * PROGRESS_FILE every 100 ms, so the caller can compute units and mallocs per second of wall
 * time and per second of the process's CPU time over any window, recorded or not, from one run.
 * It exits after MAX_SECONDS, a safety net.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Alignas(64) atomic_uint_fast64_t units_done;
static _Alignas(64) atomic_uint_fast64_t mallocs_done;

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- tight ---- */

static void *tight(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "tight");
    for (;;) {
        for (int i = 0; i < 1024; i++) {
            void *volatile block = malloc(64);
            free(block);
        }
        /* Relaxed stores by one writer: no atomic read-modify-write in the loop. */
        uint64_t done = atomic_load_explicit(&units_done, memory_order_relaxed) + 1024;
        atomic_store_explicit(&units_done, done, memory_order_relaxed);
        atomic_store_explicit(&mallocs_done, done, memory_order_relaxed);
    }
    return NULL;
}

/* ---- typical ---- */

#define TABLE 4096

struct record {
    uint64_t task, hash, length, rounds, spare[2];
};

static struct record *table[TABLE];
static uint64_t rounds_per_task;

static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *state = x;
}

__attribute__((noinline)) static uint64_t hash_document(const unsigned char *document,
                                                        size_t length, uint64_t rounds)
{
    uint64_t h = 1469598103934665603ULL;
    for (uint64_t r = 0; r < rounds; r++)
        for (size_t i = 0; i < length; i++)
            h = (h ^ document[i]) * 1099511628211ULL;
    return h;
}

/* One task: returns the mallocs it made. The document's length and the hash rounds are chosen so
 * that every task hashes about the same number of bytes. */
__attribute__((noinline)) static unsigned do_task(uint64_t task, uint64_t *seed)
{
    size_t length = 256 + xorshift(seed) % (4096 - 256);
    unsigned char *document = malloc(length);
    if (!document)
        abort();
    for (size_t i = 0; i < length; i += 8) {
        uint64_t word = xorshift(seed);
        memcpy(document + i, &word, length - i < 8 ? length - i : 8);
    }
    uint64_t rounds = rounds_per_task * 2048 / length + 1;
    struct record *record = malloc(sizeof *record);
    if (!record)
        abort();
    record->task = task;
    record->hash = hash_document(document, length, rounds);
    record->length = length;
    record->rounds = rounds;
    free(document);
    free(table[task % TABLE]);
    table[task % TABLE] = record;
    return 2;
}

static void *typical(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "typical");
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (uint64_t task = 0;; task++) {
        unsigned mallocs = do_task(task, &seed);
        atomic_store_explicit(&units_done, task + 1, memory_order_relaxed);
        atomic_store_explicit(&mallocs_done,
                              atomic_load_explicit(&mallocs_done, memory_order_relaxed) + mallocs,
                              memory_order_relaxed);
    }
    return NULL;
}

/* Hash rounds over 2 KiB that take task_us of this thread's CPU time. */
static void calibrate(double task_us)
{
    unsigned char document[2048];
    memset(document, 7, sizeof document);
    uint64_t rounds = 1, spent = 0;
    while (spent < 20000000) { /* at least 20 ms of CPU */
        rounds *= 2;
        uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        volatile uint64_t sink = hash_document(document, sizeof document, rounds);
        (void)sink;
        spent = clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    }
    rounds_per_task = (uint64_t)((double)rounds * task_us * 1000.0 / (double)spent);
    if (rounds_per_task == 0)
        rounds_per_task = 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s tight PROGRESS_FILE MAX_SECONDS\n"
                        "       %s typical PROGRESS_FILE MAX_SECONDS [TASK_US]\n",
                argv[0], argv[0]);
        return 2;
    }
    FILE *progress = fopen(argv[2], "w");
    if (!progress) {
        perror(argv[2]);
        return 1;
    }
    int max_seconds = atoi(argv[3]);
    pthread_t thread;
    int failed;
    if (strcmp(argv[1], "tight") == 0) {
        failed = pthread_create(&thread, NULL, tight, NULL);
    } else if (strcmp(argv[1], "typical") == 0) {
        double task_us = argc > 4 ? atof(argv[4]) : 250;
        if (task_us <= 0) {
            fprintf(stderr, "typical: TASK_US must be > 0\n");
            return 2;
        }
        calibrate(task_us);
        failed = pthread_create(&thread, NULL, typical, NULL);
    } else {
        failed = -1;
    }
    if (failed) {
        fprintf(stderr, "%s: bad arguments or cannot start its thread\n", argv[1]);
        return 2;
    }
    uint64_t start = clock_ns(CLOCK_REALTIME);
    const struct timespec tick = {0, 100 * 1000 * 1000};
    while (clock_ns(CLOCK_REALTIME) - start < (uint64_t)max_seconds * 1000000000u) {
        nanosleep(&tick, NULL);
        fprintf(progress, "%llu %llu %llu %llu\n", (unsigned long long)clock_ns(CLOCK_REALTIME),
                (unsigned long long)atomic_load_explicit(&units_done, memory_order_relaxed),
                (unsigned long long)clock_ns(CLOCK_PROCESS_CPUTIME_ID),
                (unsigned long long)atomic_load_explicit(&mallocs_done, memory_order_relaxed));
        fflush(progress);
    }
    return 0;
}
