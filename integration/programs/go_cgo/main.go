// go_cgo: Go calling C and C calling Go, the two ways cgo crosses stacks.
//
// Claim under test: samples in C code called through cgo are followed back
// from the system stack the C code runs on (g0, where R14 is not g) to the
// goroutine that called it, through runtime.asmcgocall and runtime.cgocall,
// down to runtime.goexit: c_hot_a and c_hot_b (hot.c) hold 75 % and 25 % of
// the C leaf samples, called 3:1 from main.callA and main.callB by worker
// goroutines. And a thread the C code creates ("c-caller") calls the
// exported Go function goSpin in a loop: its Go frames are named too.
//
// The C side has thread-locals of its own (in hot.c), so the
// runtime's g is not at the C library's first TLS word: the profiler must
// find it through the runtime.tlsg symbol.
//
// Usage: go_cgo   (prints "ready", then runs until killed)
package main

/*
#cgo CFLAGS: -O2 -fomit-frame-pointer -g
#include <stdint.h>
uint64_t c_hot_a(uint64_t seed);
uint64_t c_hot_b(uint64_t seed);
void start_c_caller(void);
*/
import "C"

import (
	"fmt"
	"runtime"
)

var sink uint64

//go:noinline
func callA(seed uint64) uint64 { return uint64(C.c_hot_a(C.uint64_t(seed))) }

//go:noinline
func callB(seed uint64) uint64 { return uint64(C.c_hot_b(C.uint64_t(seed))) }

func worker(started chan<- struct{}) {
	// One OS thread per worker: the C calls of two workers never share one.
	runtime.LockOSThread()
	started <- struct{}{}
	seed := uint64(1)
	for {
		seed = callA(seed) ^ callA(seed+1) ^ callA(seed+2) ^ callB(seed)
		sink = seed
	}
}

// goSpin is what the C thread calls back: Go work on a thread Go did not create.
//
//export goSpin
func goSpin(seed uint64) uint64 {
	x := seed | 1
	for i := 0; i < 200000; i++ {
		x = x*0xd6e8feb86659fd93 + uint64(i)
	}
	return x
}

func main() {
	started := make(chan struct{})
	for i := 0; i < 2; i++ {
		go worker(started)
	}
	for i := 0; i < 2; i++ {
		<-started
	}
	C.start_c_caller()
	fmt.Println("ready")
	select {}
}
