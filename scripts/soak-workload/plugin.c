/* The plugin scripts/soak-workload/churn.c loads and unloads over and over (dlopen, one call,
 * dlclose): each cycle maps and unmaps this file, so the target's memory map keeps changing under
 * the agent while it profiles and symbolizes. Built -O2 -g -shared -fPIC.
 *
 * plugin_work(units): ~10 microseconds of hashing per unit, in two functions of its own, so that
 * CPU samples land in the plugin while it is mapped. */
#include <stdint.h>

#define BLOCK 1024

static unsigned char plugin_block[BLOCK];

__attribute__((noinline)) static uint64_t plugin_mix(uint64_t h, unsigned round) {
    for (unsigned i = 0; i < BLOCK; i++) h = (h ^ (plugin_block[i] + round)) * 1099511628211ULL;
    return h;
}

__attribute__((noinline)) uint64_t plugin_work(unsigned units) {
    uint64_t h = 1469598103934665603ULL;
    for (unsigned u = 0; u < units; u++)
        for (unsigned round = 0; round < 8; round++) h = plugin_mix(h, round);
    return h;
}
