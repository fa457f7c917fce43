/*
 * churn_threads: hundreds of short-lived threads a second, 3:1 between two
 * worker functions.
 *
 * Claim under test: a target that keeps creating and destroying threads is
 * profiled without trouble (no crash, no leak in the agent), and the time of
 * those threads is attributed right. Every round the main thread creates 4
 * threads, then joins them. Each thread calls churn_work_a three times and
 * churn_work_b once, b in a different place in each of the four (first in
 * one, last in another): the two functions have the same body, so a correct
 * profile puts 75 % of their samples in churn_work_a. Every thread runs the
 * same mix, so whatever a new thread's first sampling period does (it starts
 * afresh, or from its creator's) weighs on both functions alike. A thread
 * lasts about 5 ms of CPU: several sampling periods at 1 kHz, less than one
 * at 100 Hz.
 *
 * Every ROUNDS_PER_WRITE rounds the number of threads created so far is
 * written to COUNTER_FILE (a temporary file renamed over it, so that a reader
 * never sees a partial number).
 *
 * Usage: churn_threads COUNTER_FILE
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* Iterations per call: about a millisecond and a half on the test machine. */
#define WORK 600000UL
#define ROUNDS_PER_WRITE 10

static volatile unsigned long sink;
static unsigned long created;

/* noipa: no inlining, cloning or identical-code folding, which would merge
 * the two bodies into one symbol. */
__attribute__((noipa, aligned(64))) void churn_work_a(void)
{
    for (unsigned long i = 0; i < WORK; i++)
        sink += i * i;
}

__attribute__((noipa, aligned(64))) void churn_work_b(void)
{
    for (unsigned long i = 0; i < WORK; i++)
        sink += i * i;
}

/* Calls churn_work_a three times and churn_work_b once, b at position `arg`. */
static void *worker(void *arg)
{
    unsigned long b_at = (unsigned long)arg;
    for (unsigned long i = 0; i < 4; i++) {
        if (i == b_at)
            churn_work_b();
        else
            churn_work_a();
    }
    return NULL;
}

static void write_counter(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (file == NULL) {
        perror("churn_threads: counter file");
        exit(1);
    }
    fprintf(file, "%lu\n", created);
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: churn_threads COUNTER_FILE\n");
        return 2;
    }
    write_counter(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (unsigned long round = 1;; round++) {
        pthread_t threads[4];
        for (int i = 0; i < 4; i++) {
            int err = pthread_create(&threads[i], NULL, worker, (void *)(unsigned long)i);
            if (err != 0) {
                fprintf(stderr, "churn_threads: pthread_create: error %d\n", err);
                return 1;
            }
        }
        for (int i = 0; i < 4; i++)
            pthread_join(threads[i], NULL);
        created += 4;
        if (round % ROUNDS_PER_WRITE == 0)
            write_counter(argv[1]);
    }
}
