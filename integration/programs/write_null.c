/* `write_null`: a syscall-heavy loop, as in the issue that asked for system time: emit() writes
 * to /dev/null 16 times for each short burst of user work in mix(), so that most of the
 * process's CPU time is system time (the kernel's syscall entry and exit, with the mitigations
 * of the day, cost far more than writing to /dev/null itself). How much depends on the CPU and
 * the kernel: 4 writes per burst of 200 iterations gave ~70 % system time on one VM, 30 % on
 * another; this mix gives ~63 % there, where a bare write loop gives 66 %.
 *
 * Claim under test: a CPU profile without --kernel accounts for user + system time; samples
 * taken in the kernel sit on the user stack that made the syscall, under one `[syscall write]`
 * frame.
 *
 * Usage: write_null [TOTALS_FILE]   (runs until killed; with a file, writes `CPU_NS NOW` to it
 * every 20 ms: the process's CPU time, user + system, and CLOCK_MONOTONIC, both in ns) */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

__attribute__((noinline)) static void mix(void)
{
    for (unsigned long i = 0; i < 20; i++)
        sink += i * i;
}

__attribute__((noinline)) static void emit(int fd)
{
    static const char line[] = "a line nobody reads\n";
    for (int i = 0; i < 16; i++)
        if (write(fd, line, sizeof line - 1) < 0)
            return;
}

static uint64_t ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void write_totals(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (!file)
        return;
    fprintf(file, "%llu %llu\n", (unsigned long long)ns(CLOCK_PROCESS_CPUTIME_ID),
            (unsigned long long)ns(CLOCK_MONOTONIC));
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    const char *totals = argc > 1 ? argv[1] : NULL;
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0)
        return 1;
    uint64_t next = 0;
    if (totals)
        write_totals(totals);
    printf("ready\n");
    fflush(stdout);
    for (unsigned long i = 0;; i++) {
        mix();
        emit(fd);
        if (totals && i % 256 == 0 && ns(CLOCK_MONOTONIC) >= next) {
            write_totals(totals);
            next = ns(CLOCK_MONOTONIC) + 20000000u;
        }
    }
}
