/*
 * churn_exec: a process that becomes another program mid-recording.
 *
 * Claim under test: after an exec, the same PID runs other code, and a
 * profile names each sample from the program that ran it: the samples taken
 * before the exec from the first program, the ones after from the second,
 * never one from the other's symbols. The test builds this source twice,
 * with -DWORK_FN=churn_exec_a_work and -DWORK_FN=churn_exec_b_work, and
 * without PIE: both programs load at the same address and have the same
 * layout, so each one's work function sits exactly where the other's does,
 * and only the time of a sample tells which program it belongs to.
 *
 * Spins in WORK_FN for SECONDS (forever if 0), then, if NEXT is given,
 * execs NEXT with the remaining arguments.
 *
 * Usage: churn_exec SECONDS [NEXT ARGS...]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#ifndef WORK_FN
#error "build with -DWORK_FN=<function name>"
#endif

/* Iterations per call: a few hundred microseconds. */
#define WORK 200000UL

static volatile unsigned long sink;

__attribute__((noipa)) void WORK_FN(void)
{
    for (unsigned long i = 0; i < WORK; i++)
        sink += i * i;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: churn_exec SECONDS [NEXT ARGS...]\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    double deadline = now() + seconds;
    printf("ready\n");
    fflush(stdout);
    while (seconds <= 0 || now() < deadline)
        WORK_FN();
    if (argc > 2) {
        execv(argv[2], argv + 2);
        perror("churn_exec: execv");
        return 1;
    }
    return 0;
}
