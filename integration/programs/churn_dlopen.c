/*
 * churn_dlopen: code mapped and unmapped hundreds of times a second.
 *
 * Claim under test: samples of code that was mapped during the recording,
 * and unmapped again, are unwound and named from the library they came from,
 * even when another library later reuses the same addresses. Each cycle
 * dlopen()s PLUGIN_A, calls its plugin_burn with 3 * WORK iterations,
 * dlclose()s it, then does the same with PLUGIN_B and WORK iterations. The
 * two plugins are builds of churn_plugin.c whose burn functions are named
 * churn_plugin_a_burn and churn_plugin_b_burn: a correct profile puts 75 %
 * of their samples in churn_plugin_a_burn. Both are unloaded at once, so the
 * loader usually maps each where the other just was.
 *
 * Every cycle the number of dlopen() calls so far is written to COUNTER_FILE
 * (through a temporary file and a rename).
 *
 * Usage: churn_dlopen PLUGIN_A PLUGIN_B COUNTER_FILE
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

/* Iterations of a plugin_burn call for PLUGIN_B: about 1 ms here. */
#define WORK 1000000UL

static unsigned long opened;

static void write_counter(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (file == NULL) {
        perror("churn_dlopen: counter file");
        exit(1);
    }
    fprintf(file, "%lu\n", opened);
    fclose(file);
    rename(tmp, path);
}

__attribute__((noipa)) static void run_plugin(const char *path, unsigned long iterations)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "churn_dlopen: %s\n", dlerror());
        exit(1);
    }
    opened++;
    void (*burn)(unsigned long) = (void (*)(unsigned long))dlsym(handle, "plugin_burn");
    if (burn == NULL) {
        fprintf(stderr, "churn_dlopen: %s\n", dlerror());
        exit(1);
    }
    burn(iterations);
    if (dlclose(handle) != 0) {
        fprintf(stderr, "churn_dlopen: dlclose: %s\n", dlerror());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: churn_dlopen PLUGIN_A PLUGIN_B COUNTER_FILE\n");
        return 2;
    }
    /* Fail before ready if a plugin cannot load. */
    run_plugin(argv[1], 1);
    run_plugin(argv[2], 1);
    write_counter(argv[3]);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        run_plugin(argv[1], 3 * WORK);
        run_plugin(argv[2], WORK);
        write_counter(argv[3]);
    }
}
