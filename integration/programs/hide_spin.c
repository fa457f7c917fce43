/*
 * hide_spin: prints "ready", then spins in LEAF (called from spin_caller)
 * forever. LEAF defaults to original_leaf; build with -DLEAF=impostor_leaf
 * for a different build of the same program (different build-id and names).
 *
 * Claim under test: the agent names the code a process runs, not whatever
 * file now sits at the path it was started from: after the binary is
 * deleted, replaced on disk by another build, or only visible inside the
 * target's own mount namespace.
 */
#include <stdio.h>

#ifndef LEAF
#define LEAF original_leaf
#endif

static volatile unsigned long sink;

__attribute__((noipa)) void LEAF(void)
{
    for (unsigned long i = 0; i < 100000; i++)
        sink += i * i;
}

__attribute__((noipa)) static void spin_caller(void)
{
    for (;;)
        LEAF();
}

int main(void)
{
    printf("ready\n");
    fflush(stdout);
    spin_caller();
    return 0;
}
