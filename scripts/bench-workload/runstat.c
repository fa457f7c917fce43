/* Runs a command and reports what it cost, like `/usr/bin/time -f`, without needing the `time`
 * package:
 *
 *   runstat OUT_FILE COMMAND ARGS...
 *
 * Waits for COMMAND with wait4() and writes one line to OUT_FILE:
 *   "<exit status> <user s> <sys s> <max RSS KiB> <wall s> <voluntary cs> <involuntary cs>"
 * The rusage of wait4() covers COMMAND (all its threads) and the descendants it waited for (for
 * `perf record ... -- sleep 20`: perf and its sleep); max RSS is the largest of them, context
 * switches their sum.
 * SIGINT/SIGTERM are forwarded to COMMAND. Exits with COMMAND's status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) {
    if (child > 0) kill(child, sig);
}

static double seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s OUT_FILE COMMAND ARGS...\n", argv[0]);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    signal(SIGINT, forward);
    signal(SIGTERM, forward);

    int status;
    struct rusage ru;
    while (wait4(child, &status, 0, &ru) < 0) {
        if (errno != EINTR) { /* EINTR: a forwarded signal, wait again */
            perror("wait4");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    fprintf(out, "%d %.3f %.3f %ld %.3f %ld %ld\n", code, seconds(ru.ru_utime),
            seconds(ru.ru_stime), ru.ru_maxrss,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            ru.ru_nvcsw, ru.ru_nivcsw);
    fclose(out);
    return code;
}
