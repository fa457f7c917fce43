// go_server: a net/http server loaded by its own clients (4 goroutines in a loop of GETs on
// loopback), with the garbage collector, the scheduler and the network poller all busy: the
// shape of a real Go service, where samples land on the system stack, in the scheduler and
// in sysmon as well as in the handlers.
//
// Claim under test: every stack ends at its goroutine's or thread's root (runtime.goexit,
// runtime.mstart, runtime.rt0_go) and nothing past it is read.
//
// Usage: go_server   (runs until killed)
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

func handler(w http.ResponseWriter, r *http.Request) {
	sum := sha256.Sum256([]byte(strings.Repeat(r.URL.Path, 200)))
	parts := make([]string, 0, 50)
	for i := 0; i < 50; i++ {
		parts = append(parts, fmt.Sprintf("%x", sum[i%32]))
	}
	io.WriteString(w, strings.Join(parts, ","))
}

func client(url string) {
	c := &http.Client{}
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

func main() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	http.HandleFunc("/", handler)
	go http.Serve(listener, nil)
	url := "http://" + listener.Addr().String() + "/some/path"
	for i := 0; i < 4; i++ {
		go client(url)
	}
	fmt.Println("ready")
	select {}
}
