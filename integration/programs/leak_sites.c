/*
 * leak_sites: two call sites leak memory, 3:1 in bytes, while a third churns through ~100 times
 * as many short-lived blocks; every call is counted, and timed.
 *
 * Claim under test: the heap profile attributes the memory still in use at the end of a
 * recording to the stacks that allocated it (leak_a and leak_b, 75/25), not to the churn whose
 * blocks are freed within a few calls, while the allocs profile ranks the churn first and adds
 * up to the bytes the program allocated.
 *
 * The program runs in units paced by absolute CLOCK_MONOTONIC deadlines (one every UNIT_US µs,
 * so its allocation rate stays the same however slow each call gets while traced; but see
 * --busy below): each unit calls churn() CHURN_PER_UNIT times; every LEAK_EVERY units, leak_a()
 * and leak_b() are called once each, one right after the other. leak_a mallocs LEAK_A_SIZE
 * bytes, leak_b LEAK_B_SIZE (3:1), and both keep the block for ever (linked into a list: a reachable leak, like a cache
 * that never evicts). churn mallocs a block whose size cycles through 32, 48 ... 176 bytes (the
 * same sequence in every unit), writes it, and frees the block it allocated CHURN_SLOTS calls
 * earlier: at most CHURN_SLOTS churn blocks are live at any time. Nothing else allocates after
 * "ready" (the totals are written without stdio). With the defaults: 25 000 churn and 250 leak
 * mallocs per second (100:1 in calls), 64 000 leaked bytes per second.
 *
 * Every 50 ms the totals are written to TOTALS_FILE (a temporary file renamed over it):
 *   "A_BYTES B_BYTES CHURN_BYTES A_CALLS B_CALLS CHURN_CALLS CHURN_NS NOW\n"
 * A_BYTES/B_BYTES/CHURN_BYTES: bytes requested from malloc by each site; *_CALLS: its malloc
 * calls; CHURN_NS: the CPU time (CLOCK_THREAD_CPUTIME_ID: what the calls cost, the uprobe traps
 * included, not the time the thread was preempted) spent in the churn calls (malloc, write,
 * free), so that CHURN_NS / CHURN_CALLS is what one churn call costs now; NOW: CLOCK_MONOTONIC,
 * ns.
 *
 * Prints "ready" once it runs. With "-v", also prints the rates every second on stderr (for
 * checking it by hand).
 *
 * With "--busy", the thread never sleeps: instead of waiting for each unit's deadline it
 * computes for a fixed amount of work (about UNIT_US µs of CPU, calibrated at start), so it
 * is busy on the CPU all the time, and calls made slower (traced) slow its whole pace, as in
 * a batch job. Its rates are then what it achieves, not what deadlines set.
 *
 * Usage: leak_sites TOTALS_FILE [-v] [--busy]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define UNIT_US 400
#define CHURN_PER_UNIT 10
#define LEAK_EVERY 20
#define LEAK_A_SIZE 384
#define LEAK_B_SIZE 128
#define CHURN_SLOTS 4

static uint64_t a_bytes, b_bytes, churn_bytes, a_calls, b_calls, churn_calls, churn_ns;

struct leaked {
    struct leaked *next;
};
static struct leaked *leaks_a, *leaks_b;
static void *churn_slot[CHURN_SLOTS];

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

__attribute__((noinline)) static void leak_a(void)
{
    struct leaked *block = malloc(LEAK_A_SIZE);
    if (!block)
        abort();
    /* Not zeroes: gcc would turn malloc + memset(0) into calloc. */
    memset(block, 0xa5, LEAK_A_SIZE);
    block->next = leaks_a;
    leaks_a = block;
    a_bytes += LEAK_A_SIZE;
    a_calls++;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void leak_b(void)
{
    struct leaked *block = malloc(LEAK_B_SIZE);
    if (!block)
        abort();
    memset(block, 0x5a, LEAK_B_SIZE);
    block->next = leaks_b;
    leaks_b = block;
    b_bytes += LEAK_B_SIZE;
    b_calls++;
    __asm__ volatile("" ::: "memory");
}

/* One short-lived block: allocated, written, and freed CHURN_SLOTS calls later. */
__attribute__((noinline)) static void churn(unsigned i)
{
    size_t size = 32 + 16 * (i % 10);
    char *block = malloc(size);
    if (!block)
        abort();
    memset(block, 0x3c, size);
    unsigned slot = i % CHURN_SLOTS;
    free(churn_slot[slot]);
    churn_slot[slot] = block;
    churn_bytes += size;
    churn_calls++;
    __asm__ volatile("" ::: "memory");
}

/* Without stdio (fopen mallocs its buffer): the program's only allocations are its sites'. */
static void write_totals(const char *path)
{
    char tmp[4096], line[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int length = snprintf(line, sizeof line, "%llu %llu %llu %llu %llu %llu %llu %llu\n",
                          (unsigned long long)a_bytes, (unsigned long long)b_bytes,
                          (unsigned long long)churn_bytes, (unsigned long long)a_calls,
                          (unsigned long long)b_calls, (unsigned long long)churn_calls,
                          (unsigned long long)churn_ns, (unsigned long long)now_ns());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t written = write(fd, line, (size_t)length);
    close(fd);
    if (written == length)
        rename(tmp, path);
}

/* Work that does not allocate: `rounds` steps of a hash. */
__attribute__((noinline)) static uint64_t compute(uint64_t rounds)
{
    uint64_t h = 1469598103934665603ULL;
    for (uint64_t r = 0; r < rounds; r++)
        h = (h ^ r) * 1099511628211ULL;
    return h;
}

/* The rounds of compute() that take UNIT_US µs of this thread's CPU time. */
static uint64_t unit_rounds(void)
{
    uint64_t rounds = 1024, spent = 0;
    while (spent < 20000000u) { /* at least 20 ms of CPU */
        rounds *= 2;
        uint64_t start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        volatile uint64_t sink = compute(rounds);
        (void)sink;
        spent = clock_ns(CLOCK_THREAD_CPUTIME_ID) - start;
    }
    return (uint64_t)((double)rounds * UNIT_US * 1000.0 / (double)spent) + 1;
}

int main(int argc, char **argv)
{
    int verbose = 0, busy = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0)
            verbose = 1;
        else if (strcmp(argv[i], "--busy") == 0)
            busy = 1;
        else
            argc = 0;
    }
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s TOTALS_FILE [-v] [--busy]\n", argv[0]);
        return 2;
    }
    uint64_t rounds = busy ? unit_rounds() : 0;
    /* Wake up on time: the rate is set by the deadlines. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    uint64_t next = now_ns(), next_totals = next, next_report = next + 1000000000u;
    uint64_t last[4] = {0};
    for (uint64_t unit = 0;; unit++) {
        uint64_t start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        for (unsigned i = 0; i < CHURN_PER_UNIT; i++)
            churn(i);
        churn_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - start;
        if (unit % LEAK_EVERY == 0) {
            leak_a();
            leak_b();
        }
        uint64_t now = now_ns();
        if (now >= next_totals) {
            write_totals(argv[1]);
            next_totals = now + 50000000u;
        }
        if (verbose && now >= next_report) {
            uint64_t figures[4] = {a_bytes + b_bytes, churn_bytes, churn_calls, churn_ns};
            fprintf(stderr, "leaked %llu B/s, churn %llu B/s, %llu calls/s, %.0f ns/call\n",
                    (unsigned long long)(figures[0] - last[0]),
                    (unsigned long long)(figures[1] - last[1]),
                    (unsigned long long)(figures[2] - last[2]),
                    (double)(figures[3] - last[3]) / (double)(figures[2] - last[2]));
            memcpy(last, figures, sizeof last);
            next_report += 1000000000u;
        }
        if (busy) {
            volatile uint64_t sink = compute(rounds);
            (void)sink;
            continue;
        }
        /* Absolute deadlines: a late unit is followed by early ones, the rate holds. A unit
         * more than 100 ms late (the machine stalled) does not start a burst to catch up. */
        next += UNIT_US * 1000u;
        if (now > next + 100000000u)
            next = now;
        struct timespec deadline = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL);
    }
}
