// go_cgo's C side: two identical leaves, and a thread of C's own that calls Go.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>

#include "_cgo_export.h"

// Thread-locals of the C side: a random state and a counter per leaf.
__thread uint64_t c_random = 0x2545f4914f6cdd1dULL;
__thread uint64_t c_calls[2];

// Iterations of a call: 50,000 to 150,000 (tens of microseconds), drawn afresh for every call
// so that no fixed period of the workers can line up with the sampling period.
static uint64_t work(void)
{
	c_random ^= c_random << 13;
	c_random ^= c_random >> 7;
	c_random ^= c_random << 17;
	return 50000 + c_random % 100000;
}

static inline uint64_t mix(uint64_t x, uint64_t k, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		x = x * k + i;
	return x;
}

__attribute__((noinline)) uint64_t c_hot_a(uint64_t seed)
{
	c_calls[0]++;
	return mix(seed | 1, 0x9e3779b97f4a7c15ULL, work());
}

__attribute__((noinline)) uint64_t c_hot_b(uint64_t seed)
{
	c_calls[1]++;
	return mix(seed | 1, 0x9e3779b97f4a7c15ULL, work());
}

static volatile uint64_t c_sink;

static void *c_caller(void *arg)
{
	(void)arg;
	uint64_t seed = 1;
	for (;;) {
		seed = goSpin(seed);
		c_sink = seed;
	}
	return 0;
}

void start_c_caller(void)
{
	pthread_t thread;
	if (pthread_create(&thread, 0, c_caller, 0) == 0)
		pthread_setname_np(thread, "c-caller");
}
