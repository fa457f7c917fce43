/*
 * lock_waits: two threads wait on two contended mutexes from two call sites, the first
 * about three times as long in total as the second, and measure how long they waited.
 *
 * Claim under test: the block profile attributes waiting time to the waiting stack, with
 * delays that add up to what the waiters measured. holder_a and holder_b hold their lock for
 * HOLD_US at a time, with a short gap between holds. waiter_a waits for lock_a again as soon
 * as it got it (it waits nearly all the time); waiter_b sleeps a random time, REST_B_US on
 * average, after each wait, so that it comes back at a random point of a hold (it waits about a
 * third of the time). wait_at_a and wait_at_b time each pthread_mutex_lock with
 * CLOCK_MONOTONIC.
 *
 * Every 50 ms the totals (nanoseconds waited at a, at b) are written to TOTALS_FILE (a
 * temporary file renamed over it): "A B NOW\n" (NOW: CLOCK_MONOTONIC, ns).
 *
 * Prints "ready" once its threads run.
 *
 * Usage: lock_waits TOTALS_FILE
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define HOLD_US 3000
#define GAP_US 100
#define REST_B_US 3000

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t waited_a, waited_b;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void *holder(void *arg)
{
    pthread_mutex_t *lock = arg;
    for (;;) {
        pthread_mutex_lock(lock);
        sleep_us(HOLD_US);
        pthread_mutex_unlock(lock);
        sleep_us(GAP_US);
    }
    return NULL;
}

__attribute__((noinline)) static void wait_at_a(void)
{
    uint64_t start = now_ns();
    pthread_mutex_lock(&lock_a);
    waited_a += now_ns() - start;
    pthread_mutex_unlock(&lock_a);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void wait_at_b(void)
{
    uint64_t start = now_ns();
    pthread_mutex_lock(&lock_b);
    waited_b += now_ns() - start;
    pthread_mutex_unlock(&lock_b);
    __asm__ volatile("" ::: "memory");
}

static void *waiter_a(void *arg)
{
    (void)arg;
    for (;;) {
        wait_at_a();
        /* Let the holder take the lock again before waiting for it. */
        sleep_us(GAP_US / 2);
    }
    return NULL;
}

static void *waiter_b(void *arg)
{
    (void)arg;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (;;) {
        wait_at_b();
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        sleep_us((long)(x % (2 * REST_B_US)));
    }
    return NULL;
}

static void write_totals(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (!file)
        return;
    fprintf(file, "%llu %llu %llu\n", (unsigned long long)waited_a, (unsigned long long)waited_b,
            (unsigned long long)now_ns());
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
    }
    pthread_t threads[4];
    pthread_create(&threads[0], NULL, holder, &lock_a);
    pthread_create(&threads[1], NULL, holder, &lock_b);
    pthread_setname_np(threads[0], "holder_a");
    pthread_setname_np(threads[1], "holder_b");
    pthread_create(&threads[2], NULL, waiter_a, NULL);
    pthread_create(&threads[3], NULL, waiter_b, NULL);
    pthread_setname_np(threads[2], "waiter_a");
    pthread_setname_np(threads[3], "waiter_b");
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        write_totals(argv[1]);
        sleep_us(50000);
    }
}
