/* The demo target: a small multi-threaded program with a recognisable profile.
 *
 * Three named worker threads share the CPU between a hash loop, a sort and a string parser;
 * one more thread sleeps. Built with -O2 -fomit-frame-pointer like release code, so the profile
 * only comes out right if DWARF unwinding works.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;

__attribute__((noinline)) static uint64_t fnv_hash(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

__attribute__((noinline)) static void hash_blocks(void) {
    unsigned char buf[4096];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)i;
    for (int i = 0; i < 200; i++) sink += fnv_hash(buf, sizeof buf);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

__attribute__((noinline)) static void sort_numbers(void) {
    enum { N = 20000 };
    static __thread uint32_t v[N];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) v[i] = s = s * 1103515245u + 12345u;
    qsort(v, N, sizeof v[0], cmp_u32);
    sink += v[N / 2];
}

__attribute__((noinline)) static long parse_numbers(const char *text) {
    long total = 0;
    while (*text) {
        char *end;
        long v = strtol(text, &end, 10);
        if (end == text) { text++; continue; }
        total += v;
        text = end;
    }
    return total;
}

__attribute__((noinline)) static void parse_text(void) {
    static const char text[] = "12 345 6789 1011 121314 15161718 19 20 21 22 23 24 25 26 27 28 29 30";
    for (int i = 0; i < 2000; i++) sink += parse_numbers(text);
}

struct job { const char *name; void (*work)(void); };

static void *worker(void *arg) {
    const struct job *job = arg;
    pthread_setname_np(pthread_self(), job->name);
    for (;;) job->work();
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "idle-sleeper");
    for (;;) sleep(1);
    return NULL;
}

int main(int argc, char **argv) {
    static const struct job jobs[] = {
        {"hasher", hash_blocks}, {"sorter", sort_numbers}, {"parser", parse_text},
    };
    int seconds = argc > 1 ? atoi(argv[1]) : 3600;
    pthread_t t;
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++)
        pthread_create(&t, NULL, worker, (void *)&jobs[i]);
    pthread_create(&t, NULL, sleeper, NULL);
    printf("ready\n");
    fflush(stdout);
    sleep((unsigned)seconds);
    return 0;
}
