/*
 * signal_frames: a signal handler that does about a quarter of the work.
 *
 * Claim under test: a sample taken in a signal handler unwinds through the
 * signal frame the kernel built (glibc's __restore_rt, whose unwind table
 * entry is a DWARF expression) into the code the signal interrupted, down
 * to main: handler_work < on_signal < __restore_rt < main_work < main. The
 * handler runs on the stack it interrupted, as handlers do unless the
 * program set up an alternate signal stack. Built -O2 -fomit-frame-pointer:
 * only the unwind tables and the signal context lead back.
 *
 * A thread ("signaller") sends the main thread SIGUSR1 after a random 1 to
 * 5 ms of sleep; the handler spends 1 ms of CPU time. Random intervals keep
 * the signals from locking in phase with a profiler's periodic samples (a
 * CPU-time timer would fire on the scheduler tick, as the samples do).
 *
 * Usage: signal_frames   (prints "ready", then runs until killed)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile unsigned long sink;

/* Iterations of a main_work call: a few hundred microseconds. */
#define MAIN_WORK 100000UL
/* The handler's CPU time per signal, measured (so that its share does not depend on the
 * machine's speed or load), in chunks of work. */
#define HANDLER_NS 1000000L
#define HANDLER_CHUNK 20000UL

static long thread_cpu_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return now.tv_sec * 1000000000L + now.tv_nsec;
}

__attribute__((noipa)) void handler_work(void)
{
    long start = thread_cpu_ns();
    do {
        for (unsigned long i = 0; i < HANDLER_CHUNK; i++)
            sink += i ^ (i >> 3);
    } while (thread_cpu_ns() - start < HANDLER_NS);
}

__attribute__((noipa)) void on_signal(int sig)
{
    handler_work();
    /* Work after the call: no tail call, so on_signal keeps its frame. */
    sink += (unsigned long)sig;
}

__attribute__((noipa)) void main_work(void)
{
    for (unsigned long i = 0; i < MAIN_WORK; i++)
        sink += i * i;
}

static void *signaller(void *main_thread)
{
    unsigned long random = 0x9e3779b97f4a7c15UL;
    for (;;) {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        struct timespec pause = {0, 1000000L + (long)(random % 4000000UL)};
        nanosleep(&pause, NULL);
        pthread_kill(*(pthread_t *)main_thread, SIGUSR1);
    }
    return NULL;
}

int main(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGUSR1, &action, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    static pthread_t main_thread;
    main_thread = pthread_self();
    pthread_t thread;
    if (pthread_create(&thread, NULL, signaller, &main_thread) != 0) {
        perror("pthread_create");
        return 1;
    }
    pthread_setname_np(thread, "signaller");
    puts("ready");
    fflush(stdout);
    for (;;)
        main_work();
}
