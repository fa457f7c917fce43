/*
 * supervisor: a container's PID 1 that runs PROGRAM again each time it exits, as a pod's
 * restartPolicy does (in a pod with shareProcessNamespace the pause container is PID 1 and
 * outlives the application's restarts; the container test's application container needs one of
 * its own, since --pid=container:APP ties the agent to APP's PID namespace).
 *
 * Claim under test: `serve --process NAME` follows the application when it restarts under a
 * new PID inside the shared namespace. Reaps every child (PID 1's duty); SIGTERM or SIGINT
 * stops the program and then the supervisor.
 *
 * Usage: supervisor PROGRAM [ARGS...]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void stop(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: supervisor PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sigaction action = {.sa_handler = stop};
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    while (!stopping) {
        pid_t child = fork();
        if (child < 0) {
            perror("fork");
            return 1;
        }
        if (child == 0) {
            execv(argv[1], argv + 1);
            perror("execv");
            _exit(127);
        }
        /* Wait for this child (reaping any other orphan on the way); a signal stops it. */
        for (;;) {
            pid_t done = wait(NULL);
            if (done == child)
                break;
            if (done < 0 && stopping) {
                kill(child, SIGTERM);
                waitpid(child, NULL, 0);
                return 0;
            }
        }
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}
