/*
 * exits_soon: spins for 1.5 s, then exits.
 *
 * Claim under test: when the target exits during a recording, the agent
 * notices, writes what it captured and exits 0 instead of waiting out the
 * rest of the requested duration.
 */
#include <stdio.h>
#include <time.h>

static volatile unsigned long sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* noipa keeps a named frame for the samples to land in. */
__attribute__((noipa)) static void spin_until(double deadline)
{
    while (now() < deadline)
        for (unsigned long i = 0; i < 100000; i++)
            sink += i;
}

int main(void)
{
    printf("ready\n");
    fflush(stdout);
    spin_until(now() + 1.5);
    return 0;
}
