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

#define WORK 200000UL

static volatile unsigned long sink;

/* noipa: no inlining, cloning or identical-code folding. */
__attribute__((noipa, aligned(64))) static void leaf_a(void)
{
    for (unsigned long i = 0; i < WORK; i++)
        sink += i * i;
}

__attribute__((noipa, aligned(64))) static void leaf_b(void)
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
    double seconds = argc > 1 ? atof(argv[1]) : 0;
    double deadline = now() + seconds;

    printf("ready\n");
    fflush(stdout);
    while (seconds <= 0 || now() < deadline) {
        leaf_a();
        leaf_a();
        leaf_a();
        leaf_b();
    }
    return 0;
}
