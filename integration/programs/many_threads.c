/* `many_threads N`: N threads blocked on one condition variable, plus a main thread that keeps
 * counting. Used to kill the agent mid-snapshot and check nothing stays stopped. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static void *park(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) pthread_cond_wait(&never, &lock);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, park, NULL) != 0) return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) usleep(1000);
}
