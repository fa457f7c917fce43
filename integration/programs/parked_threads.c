/* Threads parked in known places, for the thread-dump tests. Each named thread reaches its
 * waiting call through a function of its own (noinline), which the dump's stack must show:
 *   spinner      busy loop in spin_forever           -> running
 *   mutex-wait   pthread_mutex_lock in lock_mutex    -> sleeping in futex
 *   cond-wait    pthread_cond_wait in wait_for_cond  -> sleeping in futex
 *   sleeper      nanosleep in take_a_nap             -> sleeping in (clock_)nanosleep
 *   pipe-reader  read in read_from_pipe              -> sleeping in read
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];
static volatile unsigned long spins;

__attribute__((noinline)) static void spin_forever(void) {
    for (;;) spins++;
}

__attribute__((noinline)) static void lock_mutex(void) {
    pthread_mutex_lock(&held);
    pthread_mutex_unlock(&held);
}

__attribute__((noinline)) static void wait_for_cond(void) {
    pthread_mutex_lock(&cond_lock);
    for (;;) pthread_cond_wait(&never, &cond_lock);
}

__attribute__((noinline)) static void take_a_nap(void) {
    struct timespec t = {3600, 0};
    for (;;) nanosleep(&t, NULL);
}

__attribute__((noinline)) static void read_from_pipe(void) {
    char c;
    for (;;) {
        if (read(pipe_fds[0], &c, 1) <= 0) break;
    }
}

struct role { const char *name; void (*park)(void); };

static void *start(void *arg) {
    const struct role *role = arg;
    pthread_setname_np(pthread_self(), role->name);
    role->park();
    return NULL;
}

int main(void) {
    static const struct role roles[] = {
        {"spinner", spin_forever}, {"mutex-wait", lock_mutex}, {"cond-wait", wait_for_cond},
        {"sleeper", take_a_nap},   {"pipe-reader", read_from_pipe},
    };
    if (pipe(pipe_fds) != 0) return 1;
    pthread_mutex_lock(&held);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        pthread_t t;
        pthread_create(&t, NULL, start, (void *)&roles[i]);
    }
    usleep(200 * 1000); /* let every thread reach its parking place */
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
