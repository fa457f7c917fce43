/*
 * jemalloc_allocs: malloc and free from two call sites, 3:1 in bytes, with jemalloc as the
 * process's allocator (linked with -ljemalloc: its malloc interposes on glibc's).
 *
 * Claim under test: when the target's allocator is jemalloc, not glibc's, allocations are
 * still seen and attributed to their call sites, down to main. site_a() mallocs 384 bytes,
 * site_b() 128 bytes; each frees the block it allocated SLOTS calls earlier. The sites are
 * called alternately, PAIRS_PER_UNIT times per unit, one unit every UNIT_US µs of
 * CLOCK_MONOTONIC (absolute deadlines): 25 000 allocations per second, 3:1 in bytes, 1:1 in
 * objects. Before "ready" the program checks, with jemalloc's own statistics (mallctl
 * "thread.allocated"), that malloc is jemalloc's, and exits 1 saying so if it is not.
 *
 * Every 50 ms the totals are written to TOTALS_FILE (a temporary file renamed over it):
 *   "A_BYTES B_BYTES A_OBJECTS B_OBJECTS NOW\n"
 * (bytes asked of malloc by each site, its calls; NOW: CLOCK_MONOTONIC, ns).
 * Prints "ready" once it runs.
 *
 * Build: gcc -O2 -fomit-frame-pointer -g jemalloc_allocs.c -ljemalloc (Debian: libjemalloc-dev)
 * Usage: jemalloc_allocs TOTALS_FILE
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <jemalloc/jemalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define UNIT_US 400
#define PAIRS_PER_UNIT 5
#define SLOTS 4
#define SIZE_A 384
#define SIZE_B 128

static uint64_t a_bytes, b_bytes, a_objects, b_objects;
static void *slots_a[SLOTS], *slots_b[SLOTS];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((noinline)) static void site_a(unsigned i)
{
    void *block = malloc(SIZE_A);
    if (!block)
        abort();
    memset(block, 0xa5, SIZE_A);
    free(slots_a[i % SLOTS]);
    slots_a[i % SLOTS] = block;
    a_bytes += SIZE_A;
    a_objects++;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void site_b(unsigned i)
{
    void *block = malloc(SIZE_B);
    if (!block)
        abort();
    memset(block, 0x5a, SIZE_B);
    free(slots_b[i % SLOTS]);
    slots_b[i % SLOTS] = block;
    b_bytes += SIZE_B;
    b_objects++;
    __asm__ volatile("" ::: "memory");
}

/* jemalloc counts what this thread allocated: a malloc that does not move it is not jemalloc's. */
static int malloc_is_jemalloc(void)
{
    uint64_t before = 0, after = 0;
    size_t size = sizeof before;
    if (mallctl("thread.allocated", &before, &size, NULL, 0) != 0)
        return 0;
    void *volatile block = malloc(100000);
    size = sizeof after;
    mallctl("thread.allocated", &after, &size, NULL, 0);
    free(block);
    return after - before >= 100000;
}

static void write_totals(const char *path)
{
    char tmp[4096], line[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int length = snprintf(line, sizeof line, "%llu %llu %llu %llu %llu\n",
                          (unsigned long long)a_bytes, (unsigned long long)b_bytes,
                          (unsigned long long)a_objects, (unsigned long long)b_objects,
                          (unsigned long long)now_ns());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t written = write(fd, line, (size_t)length);
    close(fd);
    if (written == length)
        rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
    }
    if (!malloc_is_jemalloc()) {
        fprintf(stderr, "%s: malloc is not jemalloc's (link with -ljemalloc)\n", argv[0]);
        return 1;
    }
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    uint64_t next = now_ns(), next_totals = next;
    for (unsigned calls = 0;;) {
        for (unsigned i = 0; i < PAIRS_PER_UNIT; i++, calls++) {
            site_a(calls);
            site_b(calls);
        }
        uint64_t now = now_ns();
        if (now >= next_totals) {
            write_totals(argv[1]);
            next_totals = now + 50000000u;
        }
        next += UNIT_US * 1000u;
        if (now > next + 100000000u)
            next = now;
        struct timespec deadline = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL);
    }
}
