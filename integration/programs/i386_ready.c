/* A static 32-bit x86 (i386) program without libc, so that it builds without gcc-multilib:
 * prints "ready", then waits in pause() for ever. What a 64-bit-only profiler must refuse. */

/* A Linux i386 system call with up to three arguments (int $0x80). */
static long syscall3(long number, long a, long b, long c)
{
    long result;
    __asm__ volatile("int $0x80"
                     : "=a"(result)
                     : "a"(number), "b"(a), "c"(b), "d"(c)
                     : "memory");
    return result;
}

enum { SYS_WRITE = 4, SYS_PAUSE = 29 };

void _start(void)
{
    static const char ready[] = "ready\n";
    syscall3(SYS_WRITE, 1, (long)ready, sizeof ready - 1);
    for (;;)
        syscall3(SYS_PAUSE, 0, 0, 0);
}
