/*
 * leaf_ratio: two identical leaf functions called 3:1.
 *
 * Claim under test: a CPU profile attributes time to the right function.
 * leaf_a and leaf_b have the same body and so cost the same per call;
 * main calls leaf_a three times for every call of leaf_b, so a correct
 * profile puts 75 % of the leaf samples in leaf_a. Built with
 * -O2 -fomit-frame-pointer, so stacks only reach main through .eh_frame.
 *
 * Usage: leaf_ratio [SECONDS]   (runs forever without an argument)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Iterations per call, on average: a few hundred microseconds, so that the
 * 3:1 mix interleaves many times within every sampling period. Each call
 * draws its own count between WORK/2 and 3*WORK/2 (xorshift): a loop of
 * fixed period can lock in phase with per-thread CPU-time sampling, which
 * fires every so much of the thread's CPU time (80 % came out once, on an
 * Intel VM). The means are equal, so the expected split stays 3:1. */
#define WORK 200000UL

static volatile unsigned long sink;

/* noipa: no inlining, cloning or identical-code folding, which would
 * otherwise merge the two bodies into one symbol. */
__attribute__((noipa, aligned(64))) void leaf_a(unsigned long work)
{
    for (unsigned long i = 0; i < work; i++)
        sink += i * i;
}

__attribute__((noipa, aligned(64))) void leaf_b(unsigned long work)
{
    for (unsigned long i = 0; i < work; i++)
        sink += i * i;
}

/* The next call's iterations: WORK/2 + [0, WORK). */
static unsigned long draw(unsigned long *state)
{
    unsigned long x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return WORK / 2 + x % WORK;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0;
    double deadline = now() + seconds;

    unsigned long state = 0x2545f4914f6cdd1dUL;

    printf("ready\n");
    fflush(stdout);
    while (seconds <= 0 || now() < deadline) {
        leaf_a(draw(&state));
        leaf_a(draw(&state));
        leaf_a(draw(&state));
        leaf_b(draw(&state));
    }
    return 0;
}
