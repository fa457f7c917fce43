/*
 * nodwarf: leaf_ratio's 3:1 workload, built without DWARF.
 *
 * Claim under test: a binary stripped of its debug info (but not of its
 * symbol table) still gets function names, from .symtab, and complete
 * stacks, from .eh_frame. The leaves are static so that their names exist
 * only in .symtab, not in .dynsym. Built with -O2 -fomit-frame-pointer, no
 * -g, then `strip --strip-debug`.
 *
 * Usage: nodwarf [SECONDS]   (runs forever without an argument)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Iterations per call, on average; each call draws its own between WORK/2
 * and 3*WORK/2, as leaf_ratio does (a loop of fixed period can lock in
 * phase with per-thread CPU-time sampling). */
#define WORK 200000UL

static volatile unsigned long sink;

/* noipa: no inlining, cloning or identical-code folding. */
__attribute__((noipa, aligned(64))) static void leaf_a(unsigned long work)
{
    for (unsigned long i = 0; i < work; i++)
        sink += i * i;
}

__attribute__((noipa, aligned(64))) static void leaf_b(unsigned long work)
{
    for (unsigned long i = 0; i < work; i++)
        sink += i * i;
}

/* The next call's iterations: WORK/2 + [0, WORK) (xorshift). */
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
