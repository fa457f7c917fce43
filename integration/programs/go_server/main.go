// go_server: a net/http server loaded by its own clients (4 goroutines in a loop of GETs on
// loopback), with the garbage collector, the scheduler and the network poller all busy: the
// shape of a real Go service, where samples land on the system stack, in the scheduler and
// in sysmon as well as in the handlers.
//
// Claim under test: every stack ends at its goroutine's or thread's root (runtime.goexit,
// runtime.mstart, runtime.rt0_go, or runtime.mcall as in Go's own traceback) and nothing past
// it is read; and the agent's profile agrees with Go's own CPU profile of the same time.
//
// Usage: go_server [PROFILE SECONDS]   (runs until killed; with PROFILE, writes Go's own CPU
// profile of the SECONDS after "ready" there, renamed into place once complete)
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
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
	if len(os.Args) == 3 {
		seconds, err := strconv.Atoi(os.Args[2])
		if err != nil {
			panic(err)
		}
		profile(os.Args[1], time.Duration(seconds)*time.Second)
	}
	select {}
}

// profile writes Go's own CPU profile of the next `window` to `path`.
func profile(path string, window time.Duration) {
	partial := path + ".partial"
	f, err := os.Create(partial)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	time.Sleep(window)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		panic(err)
	}
	if err := os.Rename(partial, path); err != nil {
		panic(err)
	}
}
