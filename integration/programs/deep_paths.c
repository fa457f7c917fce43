/*
 * deep_paths: a thread that alternates between a deep call path and a shallow, different one,
 * so that its stack memory changes under the agent between a sample and its unwinding.
 *
 * Claim under test: a stack deeper than the sample's copy is completed from the live stack only
 * where that is right. Path A recurses DEPTH frames of 272 bytes through descend_a and spins in
 * leaf_a; path B recurses DEPTH/4 frames through descend_b (same frame layout, other code) and
 * spins in leaf_b. A sample in leaf_a copies only its innermost ~64 KiB; by the time it is
 * unwound the thread may be in path B, whose frames now occupy the outer part of the stack
 * while the deep part still holds path A's stale frames. Completing such a stack from memory
 * would stitch descend_a frames onto descend_b ones: a stack that never existed.
 *
 * Usage: deep_paths [DEPTH [SPIN_US]]   (default 400 frames, 3000 us per leaf)
 * Prints "ready" once the thread has reached leaf_a.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define FRAME_BYTES 256

static volatile unsigned long sink;
static atomic_int ready;
static int depth = 400;
static long spin_us = 3000;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline __attribute__((always_inline)) void spin(void)
{
    double deadline = now() + spin_us / 1e6;
    while (now() < deadline)
        for (unsigned long i = 0; i < 1000; i++)
            sink += i;
}

__attribute__((noipa)) static void leaf_a(void)
{
    atomic_store(&ready, 1);
    spin();
}

__attribute__((noipa)) static void leaf_b(void)
{
    spin();
}

/* One level of recursion; the volatile buffer keeps the frame on the stack across the call. */
#define DESCEND(name, leaf)                                                                   \
    __attribute__((noipa)) static unsigned long name(int level)                              \
    {                                                                                         \
        volatile char buf[FRAME_BYTES];                                                       \
        for (int i = 0; i < FRAME_BYTES; i += 64)                                             \
            buf[i] = (char)(level + i);                                                       \
        if (level == 0)                                                                       \
            leaf();                                                                           \
        else                                                                                  \
            sink += name(level - 1);                                                          \
        return buf[0] + buf[FRAME_BYTES - 64];                                                \
    }

DESCEND(descend_a, leaf_a)
DESCEND(descend_b, leaf_b)

__attribute__((noipa)) static void paths_root(void)
{
    for (;;) {
        sink += descend_a(depth);
        sink += descend_b(depth / 4);
    }
}

static void *paths_thread(void *arg)
{
    (void)arg;
    paths_root();
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t thread;

    if (argc > 1)
        depth = atoi(argv[1]);
    if (argc > 2)
        spin_us = atol(argv[2]);
    if (pthread_create(&thread, NULL, paths_thread, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    while (!atomic_load(&ready))
        usleep(1000);
    printf("ready\n");
    fflush(stdout);
    pthread_join(thread, NULL);
    return 0;
}
