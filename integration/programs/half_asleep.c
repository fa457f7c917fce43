/*
 * half_asleep: one thread ("alternating") that computes for about 10 ms of CPU, then sleeps 10 ms, in turn;
 * and threads blocked in a pipe read, a socket recv, epoll_wait and nanosleep, each in a
 * function of its own.
 *
 * Claim under test: the wall profile splits the first thread's time between on-CPU and
 * off-CPU as it really went, and says what each blocked thread waits for. The first thread
 * measures both: its CPU time while computing (CLOCK_THREAD_CPUTIME_ID) and its time in
 * nanosleep (CLOCK_MONOTONIC); every 50 ms it writes "CPU_NS SLEEP_NS NOW\n" (NOW:
 * CLOCK_MONOTONIC, ns) to TOTALS_FILE (a temporary file renamed over it).
 *
 * Prints "ready" once its threads run.
 *
 * Usage: half_asleep TOTALS_FILE
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PHASE_NS 10000000ull

static _Atomic uint64_t cpu_ns, slept_ns;
static volatile uint64_t sink;

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((noinline)) static void compute_phase(void)
{
    uint64_t start = clock_ns(CLOCK_THREAD_CPUTIME_ID), now;
    uint64_t x = sink;
    do {
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ull + 1442695040888963407ull;
        now = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    } while (now - start < PHASE_NS);
    sink = x;
    cpu_ns += now - start;
}

__attribute__((noinline)) static void sleep_phase(void)
{
    uint64_t start = clock_ns(CLOCK_MONOTONIC);
    struct timespec ts = {0, PHASE_NS};
    nanosleep(&ts, NULL);
    slept_ns += clock_ns(CLOCK_MONOTONIC) - start;
}

static void *half_asleep(void *arg)
{
    (void)arg;
    for (;;) {
        compute_phase();
        sleep_phase();
    }
    return NULL;
}

__attribute__((noinline)) static void read_pipe_forever(int fd)
{
    char byte;
    while (read(fd, &byte, 1) >= 0)
        ;
}

__attribute__((noinline)) static void recv_socket_forever(int fd)
{
    char byte;
    while (recv(fd, &byte, 1, 0) >= 0)
        ;
}

__attribute__((noinline)) static void epoll_forever(int epfd)
{
    struct epoll_event event;
    for (;;)
        epoll_wait(epfd, &event, 1, -1);
}

__attribute__((noinline)) static void nanosleep_forever(void)
{
    for (;;) {
        struct timespec ts = {3600, 0};
        nanosleep(&ts, NULL);
    }
}

static int pipe_fds[2], socket_fds[2], epoll_fd;

static void *pipe_reader(void *arg) { (void)arg; read_pipe_forever(pipe_fds[0]); return NULL; }
static void *socket_reader(void *arg) { (void)arg; recv_socket_forever(socket_fds[0]); return NULL; }
static void *poller(void *arg) { (void)arg; epoll_forever(epoll_fd); return NULL; }
static void *sleeper(void *arg) { (void)arg; nanosleep_forever(); return NULL; }

static void write_totals(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (!file)
        return;
    fprintf(file, "%llu %llu %llu\n", (unsigned long long)cpu_ns, (unsigned long long)slept_ns,
            (unsigned long long)clock_ns(CLOCK_MONOTONIC));
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TOTALS_FILE\n", argv[0]);
        return 2;
    }
    if (pipe(pipe_fds) || socketpair(AF_UNIX, SOCK_STREAM, 0, socket_fds))
        return 1;
    epoll_fd = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = pipe_fds[0]};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pipe_fds[0], &event);
    struct { void *(*run)(void *); const char *name; } threads[] = {
        {half_asleep, "alternating"}, {pipe_reader, "pipe_reader"},
        {socket_reader, "socket_reader"}, {poller, "poller"}, {sleeper, "sleeper"},
    };
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        pthread_t thread;
        pthread_create(&thread, NULL, threads[i].run, NULL);
        pthread_setname_np(thread, threads[i].name);
    }
    write_totals(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        write_totals(argv[1]);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
}
