/* `syscall_heavy`: spends most of its CPU time in the kernel, reading /dev/zero in 64 KiB
 * blocks from read_zeros (the kernel clears the user buffer), so a --kernel profile must show
 * kernel frames on top of user stacks that still reach main. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static char buf[64 * 1024];

__attribute__((noinline)) static void read_zeros(int fd) {
    for (int i = 0; i < 1000; i++)
        if (read(fd, buf, sizeof buf) < 0) return;
}

int main(void) {
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) read_zeros(fd);
}
