// A Go program for the Go-binary tests.
package main

import (
	"fmt"
	"os"
)

//go:noinline
func checksum(data string) uint32 { // MARK_GO_CHECKSUM
	var h uint32 = 2166136261
	for i := 0; i < len(data); i++ {
		h = (h ^ uint32(data[i])) * 16777619
	}
	return h
}

func main() {
	fmt.Println(checksum(os.Args[0]))
}
