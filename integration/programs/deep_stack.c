/*
 * deep_stack: a thread that spins at the bottom of a ~25 KiB stack.
 *
 * Claim under test: the agent copies enough of each thread's stack to
 * unwind it completely. `perf record --call-graph dwarf` copies 8 KiB by
 * default, so from this leaf it never reaches the thread's root.
 *
 * deep_thread (the pthread start routine) calls deep_root, which recurses
 * DEPTH times through `descend`, each frame holding a 256-byte buffer,
 * and spins in deep_leaf at the bottom before unwinding and starting over.
 * Built with -O2 -fomit-frame-pointer: only .eh_frame can unwind it.
 *
 * Usage: deep_stack [DEPTH]   (default 94 frames of 272 bytes: 25 KiB)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define FRAME_BYTES 256
#define DEFAULT_DEPTH 94

static volatile unsigned long sink;
static atomic_int at_bottom;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Spins for 50 ms: the deep leaf that almost all samples land in. */
__attribute__((noipa)) static void deep_leaf(void)
{
    atomic_store(&at_bottom, 1);
    double deadline = now() + 0.05;
    while (now() < deadline)
        for (unsigned long i = 0; i < 10000; i++)
            sink += i;
}

/*
 * One level of recursion. The volatile buffer is written before the call
 * and read after it, so the frame stays on the stack across the call: no
 * tail call, no turning the recursion into a loop.
 */
__attribute__((noipa)) static unsigned long descend(int depth)
{
    volatile char buf[FRAME_BYTES];

    for (int i = 0; i < FRAME_BYTES; i += 64)
        buf[i] = (char)(depth + i);
    if (depth == 0)
        deep_leaf();
    else
        sink += descend(depth - 1);
    return buf[0] + buf[FRAME_BYTES - 64];
}

__attribute__((noipa)) static void deep_root(int depth)
{
    for (;;)
        sink += descend(depth);
}

static void *deep_thread(void *arg)
{
    deep_root(*(int *)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    static int depth = DEFAULT_DEPTH;
    pthread_t thread;

    if (argc > 1)
        depth = atoi(argv[1]);
    if (pthread_create(&thread, NULL, deep_thread, &depth) != 0) {
        perror("pthread_create");
        return 1;
    }
    while (!atomic_load(&at_bottom))
        usleep(1000);
    printf("ready\n");
    fflush(stdout);
    pthread_join(thread, NULL);
    return 0;
}
