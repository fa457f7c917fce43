/*
 * thread_churn: short-lived threads created from two call paths, 3:1.
 *
 * Claim under test: the threadcreate profile counts every thread the
 * process creates, each under the full stack that created it. Every
 * ROUND_MS the main thread runs one round: round_a calls spawn_from_a,
 * which creates 3 threads, then round_b calls spawn_from_b, which
 * creates 1. Each thread exits at once or after about 1 ms (alternately)
 * and is joined within its round, so every thread created also exits.
 *
 * After each round the number of threads created so far is written to
 * COUNTER_FILE (a temporary file renamed over it, so that a reader never
 * sees a partial number).
 *
 * Usage: thread_churn COUNTER_FILE
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define ROUND_MS 10
#define MAX_PER_SPAWN 3

static unsigned long created;

static void *short_lived(void *arg)
{
    if ((uintptr_t)arg & 1)
        usleep(1000);
    return NULL;
}

static void start_threads(pthread_t *threads, int count)
{
    for (int i = 0; i < count; i++) {
        int err = pthread_create(&threads[i], NULL, short_lived,
                                 (void *)(uintptr_t)(created + i));
        if (err != 0) {
            fprintf(stderr, "thread_churn: pthread_create: error %d\n", err);
            exit(1);
        }
    }
    created += count;
}

static void join_threads(pthread_t *threads, int count)
{
    for (int i = 0; i < count; i++)
        pthread_join(threads[i], NULL);
}

/* The two creating functions: one stack each, never merged or inlined. */
__attribute__((noinline, noipa)) static void spawn_from_a(pthread_t *threads)
{
    start_threads(threads, 3);
}

__attribute__((noinline, noipa)) static void spawn_from_b(pthread_t *threads)
{
    start_threads(threads, 1);
}

__attribute__((noinline, noipa)) static void round_a(void)
{
    pthread_t threads[MAX_PER_SPAWN];
    spawn_from_a(threads);
    join_threads(threads, 3);
}

__attribute__((noinline, noipa)) static void round_b(void)
{
    pthread_t threads[MAX_PER_SPAWN];
    spawn_from_b(threads);
    join_threads(threads, 1);
}

static void write_counter(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (file == NULL) {
        perror("thread_churn: counter file");
        exit(1);
    }
    fprintf(file, "%lu\n", created);
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: thread_churn COUNTER_FILE\n");
        return 2;
    }
    write_counter(argv[1]);
    printf("ready\n");
    fflush(stdout);
    struct timespec pause = {0, ROUND_MS * 1000000L};
    for (;;) {
        round_a();
        round_b();
        write_counter(argv[1]);
        nanosleep(&pause, NULL);
    }
}
