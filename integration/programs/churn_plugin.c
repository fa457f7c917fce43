/*
 * churn_plugin: the shared library churn_dlopen loads and unloads.
 *
 * Built with -shared -fPIC and -DPLUGIN_BURN=<name>: each build exports
 * plugin_burn(iterations), which spins in a function of its own name
 * (churn_plugin_a_burn, churn_plugin_b_burn), so that a profile can tell which
 * build the samples came from.
 */
#ifndef PLUGIN_BURN
#error "build with -DPLUGIN_BURN=<function name>"
#endif

static volatile unsigned long sink;

__attribute__((noipa)) void PLUGIN_BURN(unsigned long iterations)
{
    for (unsigned long i = 0; i < iterations; i++)
        sink += i * i;
}

void plugin_burn(unsigned long iterations)
{
    PLUGIN_BURN(iterations);
}
