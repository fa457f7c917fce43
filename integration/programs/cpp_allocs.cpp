/*
 * cpp_allocs: C++ new and delete from two call sites, 3:1 in bytes, counted by the program.
 *
 * Claim under test: allocations made through operator new / new[] (libstdc++'s, which calls
 * malloc) are attributed to the code that wrote `new`, with their sizes, down to main.
 * site_a() creates one Big (384 bytes) with `new`; site_b() creates an array of two Small
 * (64 bytes each, trivially destructible: no array cookie, 128 bytes) with `new[]`. Each site
 * deletes the object it created SLOTS calls earlier, so few are live at any time. The sites are
 * called alternately, PAIRS_PER_UNIT times per unit, one unit every UNIT_US µs of
 * CLOCK_MONOTONIC (absolute deadlines: the rate holds however slow the calls get): 25 000
 * allocations per second, 3:1 in bytes, 1:1 in objects.
 *
 * Every 50 ms the totals are written to TOTALS_FILE (a temporary file renamed over it):
 *   "A_BYTES B_BYTES A_OBJECTS B_OBJECTS NOW\n"
 * (bytes asked of operator new by each site, its calls; NOW: CLOCK_MONOTONIC, ns).
 * Prints "ready" once it runs.
 *
 * Usage: cpp_allocs TOTALS_FILE
 */
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>

namespace {

constexpr unsigned UNIT_US = 400;
constexpr unsigned PAIRS_PER_UNIT = 5;
constexpr unsigned SLOTS = 4;

struct Big {
    unsigned char data[384];
};

struct Small {
    unsigned char data[64];
};

static_assert(sizeof(Big) == 3 * 2 * sizeof(Small), "the sites allocate 3:1 in bytes");

uint64_t a_bytes, b_bytes, a_objects, b_objects;
Big *bigs[SLOTS];
Small *smalls[SLOTS];

uint64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

void write_totals(const char *path)
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
    ssize_t written = write(fd, line, size_t(length));
    close(fd);
    if (written == length)
        rename(tmp, path);
}

} // namespace

__attribute__((noinline)) void site_a(unsigned i)
{
    Big *big = new Big;
    std::memset(big->data, 0xa5, sizeof big->data);
    delete bigs[i % SLOTS];
    bigs[i % SLOTS] = big;
    a_bytes += sizeof(Big);
    a_objects++;
    asm volatile("" ::: "memory");
}

__attribute__((noinline)) void site_b(unsigned i)
{
    Small *small = new Small[2];
    std::memset(small, 0x5a, 2 * sizeof(Small));
    delete[] smalls[i % SLOTS];
    smalls[i % SLOTS] = small;
    b_bytes += 2 * sizeof(Small);
    b_objects++;
    asm volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
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
        timespec deadline = {time_t(next / 1000000000u), long(next % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr);
    }
}
