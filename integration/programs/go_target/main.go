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

// work is the iterations per call: a few hundred microseconds.
const work = 300000

var sink uint64

//go:noinline
func hotA(seed uint64) uint64 {
	x := seed | 1
	for i := 0; i < work; i++ {
		x = x*0x9e3779b97f4a7c15 + uint64(i)
	}
	return x
}

//go:noinline
func hotB(seed uint64) uint64 {
	x := seed | 1
	for i := 0; i < work; i++ {
		x = x*0xbf58476d1ce4e5b9 + uint64(i)
	}
	return x
}

func worker(started chan<- struct{}) {
	started <- struct{}{}
	seed := uint64(1)
	for {
		seed = hotA(seed) ^ hotA(seed+1) ^ hotA(seed+2) ^ hotB(seed)
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
		go worker(started)
	}
	for i := 0; i < workers; i++ {
		<-started
	}
	fmt.Println("ready")
	select {}
}
