/*
 * busy_threads N [BUSY]: N threads, the first BUSY of them (all by default) spinning in
 * busy_leaf (called from busy_caller) forever, the others parked on a condition variable; the
 * main thread prints "ready" once all of them run, then sleeps. (A thousand spinning threads
 * would starve the agent itself of CPU: on 2 CPUs it would get a 500th of one.)
 *
 * Claim under test: at scale (1000 busy threads, one perf event per thread and CPU) and under a
 * small locked-memory limit, recording still works and every sample the kernel could not
 * deliver is counted as lost.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile unsigned long sink;
static volatile int started;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

__attribute__((noipa)) void busy_leaf(void)
{
    for (unsigned long i = 0; i < 100000; i++)
        sink += i * i;
}

__attribute__((noipa)) static void *busy_caller(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    for (;;)
        busy_leaf();
    return NULL;
}

static void *park(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pthread_cond_wait(&never, &lock);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    int busy = argc > 2 ? atoi(argv[2]) : n;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* 1000 threads × the default 8 MiB of stack would reserve 8 GiB of address space. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, i < busy ? busy_caller : park, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n)
        usleep(1000);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
