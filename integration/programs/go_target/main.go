// go_target: two Go functions sharing the work 3:1 across goroutines.
//
// Claim under test: Go binaries, which carry no .eh_frame but only a
// (compressed) .debug_frame, are unwound and named: main.hotA holds 75 %
// of the leaf samples, main.hotB 25 %, since each worker calls hotA three
// times per hotB call and both do the same work.
//
// Usage: go_target [GOROUTINES]   (default 2)
package main

import (
	"fmt"
	"os"
	"strconv"
)

// work is the iterations per call on average: a few hundred microseconds. Each
// call draws its own between work/2 and 3*work/2 (xorshift): a loop of fixed
// period can lock in phase with per-thread CPU-time sampling, which fires every
// so much of the thread's CPU time. The means are equal: the split stays 3:1.
const work = 300000

var sink uint64

//go:noinline
func hotA(seed uint64, n int) uint64 {
	x := seed | 1
	for i := 0; i < n; i++ {
		x = x*0x9e3779b97f4a7c15 + uint64(i)
	}
	return x
}

//go:noinline
func hotB(seed uint64, n int) uint64 {
	x := seed | 1
	for i := 0; i < n; i++ {
		x = x*0xbf58476d1ce4e5b9 + uint64(i)
	}
	return x
}

// draw returns the next call's iterations: work/2 + [0, work).
func draw(state *uint64) int {
	x := *state
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*state = x
	return work/2 + int(x%work)
}

func worker(started chan<- struct{}, id uint64) {
	started <- struct{}{}
	seed := uint64(1)
	state := 0x2545f4914f6cdd1d + id
	for {
		seed = hotA(seed, draw(&state)) ^ hotA(seed+1, draw(&state)) ^
			hotA(seed+2, draw(&state)) ^ hotB(seed, draw(&state))
		sink = seed
	}
}

func main() {
	workers := 2
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "usage: go_target [GOROUTINES]")
			os.Exit(2)
		}
		workers = n
	}
	started := make(chan struct{})
	for i := 0; i < workers; i++ {
		go worker(started, uint64(i))
	}
	for i := 0; i < workers; i++ {
		<-started
	}
	fmt.Println("ready")
	select {}
}
