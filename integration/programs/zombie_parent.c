/*
 * zombie_parent PIDFILE: forks a child that exits at once, never reaps it,
 * writes the child's PID to PIDFILE, prints "ready" and sleeps.
 *
 * Claim under test: asked to profile a zombie (a process that exited but
 * was not reaped: no threads to sample, no memory to read), the agent says
 * so in one line and exits non-zero instead of hanging or panicking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: zombie_parent PIDFILE\n");
        return 2;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        _exit(0);
    /* Wait until the child is a zombie, so the test never sees it alive. */
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
    for (int i = 0; i < 1000 && state != 'Z'; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
                state = 0;
            fclose(f);
        }
        if (state != 'Z')
            usleep(1000);
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    fprintf(out, "%d\n", (int)child);
    fclose(out);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
