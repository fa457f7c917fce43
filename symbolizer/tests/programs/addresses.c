/* Prints facts about itself (its main, libc's nanosleep as the dynamic linker resolves it),
 * then waits until its stdin closes: the test inspects it meanwhile. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) int wait_for_stdin(void) { /* MARK_WAIT */
    char buf[16];
    return (int)read(0, buf, sizeof buf);
}

int main(void) { /* MARK_MAIN */
    void *nanosleep_addr = dlsym(RTLD_DEFAULT, "nanosleep");
    printf("%p %p %p\n", (void *)&main, nanosleep_addr, (void *)&wait_for_stdin);
    fflush(stdout);
    return wait_for_stdin() < 0;
}
