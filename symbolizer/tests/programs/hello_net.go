// A Go program that links the net package: with a C toolchain around, Go links it with cgo
// (for the C library's resolver) by its own linker, as most Go servers are built.
package main

import (
	"fmt"
	"net"
)

func main() {
	fmt.Println(net.ParseIP("127.0.0.1"))
}
