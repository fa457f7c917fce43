/*
 * main_exits: a process whose main thread has exited while its other
 * threads run on.
 *
 * Claim under test: such a process is alive and fully profiled. Its main
 * thread stays a zombie until the last thread exits, and /proc/PID/maps,
 * exe, root and mem of the process read empty or fail: the agent must read
 * them through a live thread (/proc/PID/task/TID) and not take the process
 * for a zombie.
 *
 * A worker thread named "burner" spins in burn_leaf; main prints "ready"
 * once it runs, then calls pthread_exit.
 *
 * Usage: main_exits
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>

static volatile unsigned long sink;

__attribute__((noipa)) void burn_leaf(void)
{
    for (unsigned long i = 0; i < 200000UL; i++)
        sink += i * i;
}

static void *burner(void *arg)
{
    for (;;)
        burn_leaf();
    return arg;
}

int main(void)
{
    pthread_t thread;
    if (pthread_create(&thread, NULL, burner, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    pthread_setname_np(thread, "burner");
    printf("ready\n");
    fflush(stdout);
    pthread_exit(NULL);
}
