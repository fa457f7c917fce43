/*
 * grow_ratio: two call sites make new memory resident, 3:1 in bytes, and give it back.
 *
 * Claim under test: the growth profile attributes page faults to the code that touches new
 * memory, in proportion to the bytes. Each round, grow_a maps 3 MiB of fresh anonymous memory
 * and writes every page, grow_b does the same with 1 MiB, and both unmap it (so that the
 * process does not grow without end). Transparent huge pages are refused (MADV_NOHUGEPAGE):
 * every page is one fault. After each round the bytes touched so far by each site are written
 * to TOTALS_FILE (a temporary file renamed over it) as "A_BYTES B_BYTES NOW\n" (NOW:
 * CLOCK_MONOTONIC, ns). Prints "ready" once it runs.
 *
 * Usage: grow_ratio TOTALS_FILE
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static uint64_t touched_a, touched_b;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void touch_fresh(size_t bytes)
{
    char *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED)
        return;
    madvise(memory, bytes, MADV_NOHUGEPAGE);
    long page = sysconf(_SC_PAGESIZE);
    for (size_t offset = 0; offset < bytes; offset += (size_t)page)
        memory[offset] = 1;
    munmap(memory, bytes);
}

__attribute__((noinline)) static void grow_a(void)
{
    touch_fresh(3 * MIB);
    touched_a += 3 * MIB;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void grow_b(void)
{
    touch_fresh(1 * MIB);
    touched_b += 1 * MIB;
    __asm__ volatile("" ::: "memory");
}

static void write_totals(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (!file)
        return;
    fprintf(file, "%llu %llu %llu\n", (unsigned long long)touched_a,
            (unsigned long long)touched_b, (unsigned long long)now_ns());
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
    }
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (unsigned long round = 0;; round++) {
        grow_a();
        grow_b();
        if (round % 16 == 0)
            write_totals(argv[1]);
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
    }
}
