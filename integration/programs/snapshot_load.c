/* `snapshot_load GAPS_FILE BUSY BLOCKED`: a target under full CPU load for the thread-snapshot
 * tests and benchmark. Each thread reaches where it stays through a function of its own
 * (noinline), which its stack must show:
 *   busy-N     BUSY threads spinning in spin_busy (pass 2 per CPU: every core is kept busy)
 *   pipe-N     reading an empty pipe in wait_on_pipe     } BLOCKED threads, in turn
 *   cond-N     waiting on a condition in wait_on_cond    }
 *   nap-N      sleeping in take_a_nap                    }
 *   ticker     SCHED_FIFO, sleeps 200 us at a time in tick and measures the gap between
 *              wakeups: anything that stops it (a ptrace stop) shows as a long gap
 *   main       pause() in main
 * Every 100 ms the ticker appends "END_NS WORST_GAP_NS" (CLOCK_MONOTONIC at the end of the
 * window, the longest gap between two of its wakeups in the window) to GAPS_FILE. Its first
 * line says "fifo 1" when SCHED_FIFO was granted, "fifo 0" when not. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];
static volatile unsigned long spins;
static const char *gaps_path;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

__attribute__((noinline)) static void spin_busy(void) {
    for (;;) spins++;
}

__attribute__((noinline)) static void wait_on_pipe(void) {
    char c;
    for (;;) {
        if (read(pipe_fds[0], &c, 1) <= 0) break;
    }
}

__attribute__((noinline)) static void wait_on_cond(void) {
    pthread_mutex_lock(&cond_lock);
    for (;;) pthread_cond_wait(&never, &cond_lock);
}

__attribute__((noinline)) static void take_a_nap(void) {
    struct timespec t = {3600, 0};
    for (;;) nanosleep(&t, NULL);
}

__attribute__((noinline)) static void tick(FILE *out) {
    struct timespec pause_time = {0, 200 * 1000};
    uint64_t last = now_ns(), window_end = last + 100000000u, worst = 0;
    for (;;) {
        clock_nanosleep(CLOCK_MONOTONIC, 0, &pause_time, NULL);
        uint64_t now = now_ns();
        if (now - last > worst) worst = now - last;
        last = now;
        if (now >= window_end) {
            fprintf(out, "%llu %llu\n", (unsigned long long)now, (unsigned long long)worst);
            fflush(out);
            worst = 0;
            window_end = now + 100000000u;
        }
    }
}

static void *ticker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "ticker");
    struct sched_param param = {.sched_priority = 1};
    int fifo = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0;
    FILE *out = fopen(gaps_path, "w");
    if (!out) exit(2);
    fprintf(out, "fifo %d\n", fifo);
    fflush(out);
    tick(out);
    return NULL;
}

struct role {
    char name[16];
    void (*park)(void);
};

static void *start(void *arg) {
    struct role *role = arg;
    pthread_setname_np(pthread_self(), role->name);
    role->park();
    return NULL;
}

static void spawn(const char *prefix, int index, void (*park)(void)) {
    struct role *role = malloc(sizeof *role);
    if (!role) exit(1);
    snprintf(role->name, sizeof role->name, "%s-%d", prefix, index);
    role->park = park;
    pthread_t t;
    if (pthread_create(&t, NULL, start, role) != 0) exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: snapshot_load GAPS_FILE BUSY BLOCKED\n");
        return 2;
    }
    gaps_path = argv[1];
    int busy = atoi(argv[2]), blocked = atoi(argv[3]);
    if (pipe(pipe_fds) != 0) return 1;
    for (int i = 0; i < blocked; i++) {
        void (*parks[3])(void) = {wait_on_pipe, wait_on_cond, take_a_nap};
        const char *names[3] = {"pipe", "cond", "nap"};
        spawn(names[i % 3], i, parks[i % 3]);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, ticker, NULL) != 0) return 1;
    for (int i = 0; i < busy; i++) spawn("busy", i, spin_busy);
    usleep(300 * 1000); /* every thread at its place */
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
