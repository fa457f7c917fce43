/*
 * odd_names: a process whose names are not UTF-8.
 *
 * Claim under test: the kernel prints a thread's name and a mapped file's
 * path as the raw bytes they are, and a program may set them to anything
 * (prctl cuts names at 15 bytes, splitting multibyte characters, and file
 * names are bytes). Such a process must be profiled like any other: its
 * /proc files read as text with the odd bytes replaced, not refused.
 *
 * The main thread renames itself to "caf\xe9\xff" (Latin-1, invalid UTF-8),
 * dlopen()s the plugin given as argument (whose path the test makes
 * invalid UTF-8 too) and spins in its plugin_burn.
 *
 * Usage: odd_names PLUGIN
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/prctl.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: odd_names PLUGIN\n");
        return 2;
    }
    void *plugin = dlopen(argv[1], RTLD_NOW);
    if (!plugin) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    void (*burn)(unsigned long) = (void (*)(unsigned long))dlsym(plugin, "plugin_burn");
    if (!burn) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 1;
    }
    prctl(PR_SET_NAME, "caf\xe9\xff", 0, 0, 0);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        burn(200000UL);
}
