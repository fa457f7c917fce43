/*
 * churn_fork: a process that keeps forking children, half of which exec.
 *
 * Claim under test: recording a process profiles that process only. The
 * parent spends its time in churn_parent_work; every FORK_EVERY calls it
 * forks a child that spins in churn_child_work for a few milliseconds and
 * exits, or (every other child) execs this same program as "churn_fork
 * --child", which does the same in a fresh image. The children run on the
 * other CPU meanwhile. A profile of the parent's PID holds the parent's own
 * samples and not one of its children's: churn_child_work never appears.
 *
 * After every fork the number of children so far is written to COUNTER_FILE
 * (through a temporary file and a rename).
 *
 * Usage: churn_fork COUNTER_FILE
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Iterations per call: about 1 ms here. */
#define WORK 1000000UL
#define FORK_EVERY 5
#define CHILD_CALLS 5

static volatile unsigned long sink;
static unsigned long forked;

__attribute__((noipa)) void churn_parent_work(void)
{
    for (unsigned long i = 0; i < WORK; i++)
        sink += i * i;
}

__attribute__((noipa)) void churn_child_work(void)
{
    for (unsigned long i = 0; i < WORK; i++)
        sink += i * i;
}

static void child(void)
{
    for (int i = 0; i < CHILD_CALLS; i++)
        churn_child_work();
    _exit(0);
}

static void write_counter(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen(tmp, "w");
    if (file == NULL) {
        perror("churn_fork: counter file");
        exit(1);
    }
    fprintf(file, "%lu\n", forked);
    fclose(file);
    rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--child") == 0)
        child();
    if (argc != 2) {
        fprintf(stderr, "usage: churn_fork COUNTER_FILE\n");
        return 2;
    }
    write_counter(argv[1]);
    printf("ready\n");
    fflush(stdout);
    for (unsigned long call = 1;; call++) {
        churn_parent_work();
        if (call % FORK_EVERY != 0)
            continue;
        pid_t pid = fork();
        if (pid < 0) {
            perror("churn_fork: fork");
            return 1;
        }
        if (pid == 0) {
            if (forked % 2 == 1) {
                execl("/proc/self/exe", "churn_fork", "--child", (char *)NULL);
                _exit(127);
            }
            child();
        }
        forked++;
        write_counter(argv[1]);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
}
