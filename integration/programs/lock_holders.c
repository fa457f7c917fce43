/*
 * lock_holders: two critical sections hold one contended lock, the first three times as long
 * as the second, while a third thread keeps waiting for it.
 *
 * Claim under test: the mutex profile attributes the waiter's delay to the stack that released
 * the lock, in proportion to how long each section made it wait. holder_a and holder_b take
 * turns (a condition variable passes the turn, so they never wait for each other on the lock):
 * section_a holds the lock for HOLD_A_US, section_b for HOLD_B_US (a third of it), each
 * releasing it at the end of the section. The waiter locks and unlocks in a loop: it waits
 * behind every hold, and each release wakes it. The waiter measures how long it waited behind
 * each section (the section in the lock when its wait began); every 50 ms it writes
 * "BEHIND_A_NS BEHIND_B_NS NOW\n" (NOW: CLOCK_MONOTONIC, ns) to TOTALS_FILE (a temporary file
 * renamed over it). Prints "ready" once its threads run.
 *
 * Usage: lock_holders TOTALS_FILE
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define HOLD_A_US 3000
#define HOLD_B_US 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static int turn; /* 0: a, 1: b */
static _Atomic int holding; /* 0: nobody, 1: a, 2: b */
static _Atomic uint64_t behind[3];

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

static void wait_turn(int mine)
{
    pthread_mutex_lock(&turn_lock);
    while (turn != mine)
        pthread_cond_wait(&turn_changed, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
}

static void pass_turn(int next)
{
    pthread_mutex_lock(&turn_lock);
    turn = next;
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&turn_lock);
}

__attribute__((noinline)) static void section_a(void)
{
    pthread_mutex_lock(&lock);
    holding = 1;
    sleep_us(HOLD_A_US);
    holding = 0;
    pthread_mutex_unlock(&lock);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void section_b(void)
{
    pthread_mutex_lock(&lock);
    holding = 2;
    sleep_us(HOLD_B_US);
    holding = 0;
    pthread_mutex_unlock(&lock);
    __asm__ volatile("" ::: "memory");
}

static void *holder_a(void *arg)
{
    (void)arg;
    for (;;) {
        wait_turn(0);
        section_a();
        /* Let the waiter through before the next hold. */
        sleep_us(200);
        pass_turn(1);
    }
    return NULL;
}

static void *holder_b(void *arg)
{
    (void)arg;
    for (;;) {
        wait_turn(1);
        section_b();
        sleep_us(200);
        pass_turn(0);
    }
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    for (;;) {
        int section = holding;
        uint64_t start = now_ns();
        pthread_mutex_lock(&lock);
        behind[section] += now_ns() - start;
        pthread_mutex_unlock(&lock);
        sleep_us(50);
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
    fprintf(file, "%llu %llu %llu\n", (unsigned long long)behind[1],
            (unsigned long long)behind[2], (unsigned long long)now_ns());
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
    }
    pthread_t threads[3];
    pthread_create(&threads[0], NULL, holder_a, NULL);
    pthread_create(&threads[1], NULL, holder_b, NULL);
    pthread_create(&threads[2], NULL, waiter, NULL);
    pthread_setname_np(threads[0], "holder_a");
    pthread_setname_np(threads[1], "holder_b");
    pthread_setname_np(threads[2], "waiter");
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        sleep_us(50000);
        write_totals(argv[1]);
    }
}
