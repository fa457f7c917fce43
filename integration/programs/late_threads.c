/*
 * late_threads: threads that start after the recording has started.
 *
 * Claim under test: the agent follows threads created while it records.
 * The process starts with its main thread only; DELAY seconds later it
 * starts two threads named "late-1" and "late-2" that spin in late_work.
 *
 * Usage: late_threads [DELAY]   (default 1 s)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The main thread's work until the late threads exist. */
__attribute__((noipa)) static void early_work(double seconds)
{
    double deadline = now() + seconds;
    while (now() < deadline)
        for (unsigned long i = 0; i < 100000; i++)
            sink += i;
}

__attribute__((noipa)) static void late_work(void)
{
    for (;;)
        for (unsigned long i = 0; i < 100000; i++)
            sink += i;
}

/* Names itself before working, so that all its samples carry the name. */
static void *late_thread(void *name)
{
    pthread_setname_np(pthread_self(), name);
    late_work();
    return NULL;
}

static pthread_t start_late_thread(const char *name)
{
    pthread_t thread;
    int err = pthread_create(&thread, NULL, late_thread, (void *)name);
    if (err != 0) {
        fprintf(stderr, "late_threads: cannot start %s: error %d\n", name, err);
        exit(1);
    }
    return thread;
}

int main(int argc, char **argv)
{
    double delay = argc > 1 ? atof(argv[1]) : 1.0;

    printf("ready\n");
    fflush(stdout);
    early_work(delay);
    pthread_t late = start_late_thread("late-1");
    start_late_thread("late-2");
    /* Sleep, leaving the CPU to the late threads (and to the agent); the
     * main thread stays alive so that only one claim is under test here. */
    pthread_join(late, NULL);
    return 0;
}
