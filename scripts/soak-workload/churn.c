/* The target of scripts/soak: a process that keeps changing under a profiler, while burning CPU
 * in functions with recognizable names.
 *
 *   churn PLUGIN_SO [THREADS_PER_S] [FORKS_PER_S] [DLOPENS_PER_S] [MAX_SECONDS]
 *
 * Threads, each named (pthread_setname_np):
 *   - "churn-burner": burn_hash() and burn_sort() alternately, ~5 ms on / 5 ms off: about half a
 *     core, so CPU profiles always have samples in named functions;
 *   - "churn-spawner": creates THREADS_PER_S threads per second (default 400), "churn-short"
 *     running short_task() (~50 us) then exiting; every 8th is "churn-long", which lives
 *     ~200 ms (sleeping and working), so that ~10 of them come and go at any time; half of the
 *     threads are joined, half detached;
 *   - "churn-forker": fork()s FORKS_PER_S children per second (default 5); each spins in
 *     child_spin() for ~20 ms and _exit()s; every 4th child execs /bin/true instead; the parent
 *     reaps them;
 *   - "churn-plugin": DLOPENS_PER_S times per second (default 50) dlopen()s PLUGIN_SO, calls its
 *     plugin_work() (~1 ms), dlclose()s it (the library is unmapped each time);
 *   - the main thread prints a line per second: "<unix s> <threads created> <forks>
 *     <dlopens> <failures>", counters since start.
 * Exits after MAX_SECONDS (default 7200), a safety net should its parent die without killing it.
 *
 * Built -O2 -g (scripts/soak). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static atomic_ulong threads_created, forks_done, dlopens_done, failures;
static volatile uint64_t sink;

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(long long ns) {
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Paces a loop to `per_second` iterations per second, catching up on lateness (bounded). */
struct pacer {
    long long next, period;
};

static void pacer_init(struct pacer *p, double per_second) {
    p->period = (long long)(1e9 / per_second);
    p->next = now_ns(CLOCK_MONOTONIC);
}

static void pacer_wait(struct pacer *p) {
    long long now = now_ns(CLOCK_MONOTONIC);
    p->next += p->period;
    if (p->next < now - 100000000LL) p->next = now; /* more than 100 ms late: do not burst */
    if (p->next > now) sleep_ns(p->next - now);
}

/* ---- CPU burn in named functions ---------------------------------------------------------- */

static unsigned char block[4096];

__attribute__((noinline)) static uint64_t burn_hash(long long ns) {
    long long end = now_ns(CLOCK_THREAD_CPUTIME_ID) + ns;
    uint64_t h = 1469598103934665603ULL;
    do {
        for (size_t i = 0; i < sizeof block; i++) h = (h ^ block[i]) * 1099511628211ULL;
    } while (now_ns(CLOCK_THREAD_CPUTIME_ID) < end);
    return h;
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

__attribute__((noinline)) static uint64_t burn_sort(long long ns) {
    static uint32_t values[2048];
    long long end = now_ns(CLOCK_THREAD_CPUTIME_ID) + ns;
    uint32_t x = 2463534242u;
    do {
        for (size_t i = 0; i < 2048; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            values[i] = x;
        }
        qsort(values, 2048, sizeof values[0], compare_u32);
    } while (now_ns(CLOCK_THREAD_CPUTIME_ID) < end);
    return values[0];
}

static void *burner(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "churn-burner");
    for (unsigned i = 0;; i++) {
        sink += (i & 1) ? burn_sort(5000000) : burn_hash(5000000);
        sleep_ns(5000000);
    }
    return NULL;
}

/* ---- Thread churn ------------------------------------------------------------------------- */

__attribute__((noinline)) static void *short_task(void *arg) {
    pthread_setname_np(pthread_self(), "churn-short");
    sink += burn_hash(50000);
    return arg;
}

__attribute__((noinline)) static void *long_task(void *arg) {
    pthread_setname_np(pthread_self(), "churn-long");
    for (int i = 0; i < 20; i++) {
        sink += burn_hash(100000);
        sleep_ns(10000000);
    }
    return arg;
}

static void *spawner(void *arg) {
    double rate = *(double *)arg;
    pthread_setname_np(pthread_self(), "churn-spawner");
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    struct pacer pace;
    pacer_init(&pace, rate);
    for (unsigned long n = 0;; n++) {
        int joined = n & 1;
        void *(*task)(void *) = (n % 8 == 7) ? long_task : short_task;
        pthread_t thread;
        int err = pthread_create(&thread, joined ? NULL : &detached, task, NULL);
        if (err != 0) {
            atomic_fetch_add(&failures, 1);
        } else {
            atomic_fetch_add(&threads_created, 1);
            /* Join short tasks only: a joined long task would hold the spawner for 200 ms. */
            if (joined && task == short_task) pthread_join(thread, NULL);
            else if (joined) pthread_detach(thread);
        }
        pacer_wait(&pace);
    }
    return NULL;
}

/* ---- Fork churn --------------------------------------------------------------------------- */

/* Runs in the forked child of a multithreaded process: only async-signal-safe work, then _exit. */
__attribute__((noinline)) static void child_spin(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long end = ts.tv_sec * 1000000000LL + ts.tv_nsec + 20000000LL;
    uint64_t h = 0;
    for (;;) {
        for (size_t i = 0; i < sizeof block; i++) h = (h ^ block[i]) * 1099511628211ULL;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ts.tv_sec * 1000000000LL + ts.tv_nsec >= end) break;
    }
    sink += h;
}

static void *forker(void *arg) {
    double rate = *(double *)arg;
    pthread_setname_np(pthread_self(), "churn-forker");
    struct pacer pace;
    pacer_init(&pace, rate);
    for (unsigned long n = 0;; n++) {
        pid_t child = fork();
        if (child == 0) {
            if (n % 4 == 3) {
                char *argv[] = {"true", NULL};
                execv("/bin/true", argv);
            } else {
                child_spin();
            }
            _exit(0);
        }
        if (child < 0) {
            atomic_fetch_add(&failures, 1);
        } else {
            int status;
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
            }
            atomic_fetch_add(&forks_done, 1);
        }
        pacer_wait(&pace);
    }
    return NULL;
}

/* ---- dlopen/dlclose churn ----------------------------------------------------------------- */

struct plugin_args {
    const char *path;
    double rate;
};

static void *plugin_loop(void *arg) {
    struct plugin_args *args = arg;
    pthread_setname_np(pthread_self(), "churn-plugin");
    struct pacer pace;
    pacer_init(&pace, args->rate);
    for (;;) {
        void *handle = dlopen(args->path, RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL) {
            fprintf(stderr, "churn: dlopen %s: %s\n", args->path, dlerror());
            atomic_fetch_add(&failures, 1);
        } else {
            uint64_t (*work)(unsigned) = (uint64_t(*)(unsigned))dlsym(handle, "plugin_work");
            if (work != NULL) sink += work(12);
            else atomic_fetch_add(&failures, 1);
            dlclose(handle);
            atomic_fetch_add(&dlopens_done, 1);
        }
        pacer_wait(&pace);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PLUGIN_SO [THREADS_PER_S] [FORKS_PER_S] [DLOPENS_PER_S] [MAX_SECONDS]\n", argv[0]);
        return 2;
    }
    static double thread_rate, fork_rate;
    static struct plugin_args plugin;
    plugin.path = argv[1];
    thread_rate = argc > 2 ? atof(argv[2]) : 400;
    fork_rate = argc > 3 ? atof(argv[3]) : 5;
    plugin.rate = argc > 4 ? atof(argv[4]) : 50;
    long max_seconds = argc > 5 ? atol(argv[5]) : 7200;
    for (size_t i = 0; i < sizeof block; i++) block[i] = (unsigned char)(i * 131 + 7);
    setvbuf(stdout, NULL, _IOLBF, 0);

    pthread_t thread;
    if (pthread_create(&thread, NULL, burner, NULL) != 0) return 1;
    if (thread_rate > 0 && pthread_create(&thread, NULL, spawner, &thread_rate) != 0) return 1;
    if (fork_rate > 0 && pthread_create(&thread, NULL, forker, &fork_rate) != 0) return 1;
    if (plugin.rate > 0 && pthread_create(&thread, NULL, plugin_loop, &plugin) != 0) return 1;

    long long start = now_ns(CLOCK_MONOTONIC);
    for (;;) {
        sleep_ns(1000000000LL);
        printf("%lld %lu %lu %lu %lu\n", (long long)time(NULL), atomic_load(&threads_created),
               atomic_load(&forks_done), atomic_load(&dlopens_done), atomic_load(&failures));
        if ((now_ns(CLOCK_MONOTONIC) - start) / 1000000000LL >= max_seconds) return 0;
    }
}
