/*
 * ping_pong: two threads pass a byte back and forth over two pipes as fast as they can:
 * hundreds of thousands of context switches a second, the extreme case of context-switch
 * sampling.
 *
 * Claim under test: sampling slows it within bounds while it runs, and not at all once the
 * agent is gone (even killed). Every 50 ms the number of round trips so far is written to
 * TOTALS_FILE (a temporary file renamed over it) as "ROUND_TRIPS 0 NOW\n" (NOW:
 * CLOCK_MONOTONIC, ns). Prints "ready" once its threads run.
 *
 * Usage: ping_pong TOTALS_FILE
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static _Atomic uint64_t round_trips;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *echo(void *arg)
{
    (void)arg;
    char byte;
    while (read(ping[0], &byte, 1) == 1 && write(pong[1], &byte, 1) == 1)
        ;
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    char byte = 'x';
    while (write(ping[1], &byte, 1) == 1 && read(pong[0], &byte, 1) == 1)
        round_trips++;
    return NULL;
}

static void write_totals(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (!file)
        return;
    fprintf(file, "%llu 0 %llu\n", (unsigned long long)round_trips, (unsigned long long)now_ns());
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
    }
    if (pipe(ping) || pipe(pong))
        return 1;
    pthread_t threads[2];
    pthread_create(&threads[0], NULL, echo, NULL);
    pthread_create(&threads[1], NULL, serve, NULL);
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        write_totals(argv[1]);
    }
}
