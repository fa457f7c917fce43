/*
 * jit_code: hot code that lives in no ELF file, named only by a perf map.
 *
 * Claim under test: code a JIT compiles into anonymous memory is named
 * from /tmp/perf-PID.map, as JIT runtimes (Node --perf-basic-prof, the
 * JVM's perf-map-agent...) publish it, and stacks unwind through it back
 * into the ELF code that called it.
 *
 * The program copies one machine-code loop (with a frame-pointer prologue,
 * as JITs emit) into two places of an anonymous executable mapping, writes
 * a perf map naming them jit_hot_loop and jit_cold_loop, and calls them
 * 3:1 through run_hot and run_cold (ordinary C, -fomit-frame-pointer).
 * A correct profile puts 75 % of the JIT samples in jit_hot_loop, each
 * under run_hot or run_cold and main.
 *
 * The map is removed when the program is ended by SIGTERM or SIGINT. Given
 * SECONDS, the program exits by itself after that long and leaves its map
 * behind, as JIT runtimes do: a profiler must find it after the exit.
 *
 * Usage: jit_code [SECONDS]
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* long loop(long n): push rbp; mov rbp,rsp; mov rax,rdi;
 * 1: dec rax; jnz 1b; pop rbp; ret */
static const unsigned char LOOP_CODE[] = {
    0x55,             /* push %rbp */
    0x48, 0x89, 0xe5, /* mov %rsp,%rbp */
    0x48, 0x89, 0xf8, /* mov %rdi,%rax */
    0x48, 0xff, 0xc8, /* 1: dec %rax */
    0x75, 0xfb,       /* jnz 1b */
    0x5d,             /* pop %rbp */
    0xc3,             /* ret */
};

/* Iterations per call: about a millisecond. */
#define WORK 2000000L
/* Where each copy goes in the mapping: apart, like separately compiled code. */
#define HOT_OFFSET 0x100
#define COLD_OFFSET 0x800

typedef long (*loop_fn)(long);

static loop_fn jit_hot, jit_cold;
static char map_path[64];

static void remove_map(int sig)
{
    unlink(map_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* noipa, and work after the call: the calls stay real calls, not tail jumps. */
__attribute__((noipa)) long run_hot(long n)
{
    long left = jit_hot(n);
    __asm__ volatile("" ::: "memory");
    return left + 1;
}

__attribute__((noipa)) long run_cold(long n)
{
    long left = jit_cold(n);
    __asm__ volatile("" ::: "memory");
    return left + 1;
}

static void write_map(unsigned char *code)
{
    snprintf(map_path, sizeof map_path, "/tmp/perf-%d.map", (int)getpid());
    FILE *map = fopen(map_path, "w");
    if (!map) {
        perror(map_path);
        exit(1);
    }
    fprintf(map, "%lx %zx jit_hot_loop\n", (unsigned long)(code + HOT_OFFSET), sizeof LOOP_CODE);
    fprintf(map, "%lx %zx jit_cold_loop\n", (unsigned long)(code + COLD_OFFSET), sizeof LOOP_CODE);
    fclose(map);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0;
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
    if (code == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memcpy(code + HOT_OFFSET, LOOP_CODE, sizeof LOOP_CODE);
    memcpy(code + COLD_OFFSET, LOOP_CODE, sizeof LOOP_CODE);
    if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0) {
        perror("mprotect");
        return 1;
    }
    jit_hot = (loop_fn)(code + HOT_OFFSET);
    jit_cold = (loop_fn)(code + COLD_OFFSET);
    write_map(code);
    signal(SIGTERM, remove_map);
    signal(SIGINT, remove_map);

    printf("ready\n");
    fflush(stdout);
    double deadline = now() + seconds;
    while (seconds <= 0 || now() < deadline) {
        run_hot(WORK);
        run_hot(WORK);
        run_hot(WORK);
        run_cold(WORK);
    }
    return 0;
}
