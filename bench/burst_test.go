package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The burst answers every request, times each from the burst and from its
// own write, and no server slower than its send is charged for the wait:
// a request's own time is at most the whole burst's.
func TestBurstTimesEachRequestFromTheBurstAndFromItsWrite(t *testing.T) {
	const n, delay = 40, 100 * time.Millisecond
	var reqs atomic.Int64
	url := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		if r.Header.Get("Connection") != "close" || r.URL.Path != "/slow" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		time.Sleep(delay)
		_, _ = io.WriteString(w, `{"message":"Hello World"}`)
	}))
	res := &capacityResult{calls: 1, delay: delay}
	if err := burstAt(context.Background(), url, "/slow", "Connection: close\r\n", n, res); err != nil {
		t.Fatal(err)
	}
	if res.connected != n || res.ok != n || res.errors != 0 || res.non2xx != 0 || reqs.Load() != n {
		t.Fatalf("connected %d, ok %d, errors %d (%s), non-2xx %d, server saw %d; want %d ok", res.connected, res.ok, res.errors, res.firstErr, res.non2xx, reqs.Load(), n)
	}
	if res.lat.n != n {
		t.Errorf("%d latencies recorded, want %d", res.lat.n, n)
	}
	if res.longest < delay || res.longest > res.wall || res.sent > res.wall || res.wall > 10*delay {
		t.Errorf("each answered at most %v after its write, last written at %v, all answered at %v; want delay %v ≤ the first ≤ the last ≥ the second, and not much more",
			res.longest, res.sent, res.wall, delay)
	}
}

// A connection the server drops counts as an error, and the burst does not
// wait for it.
func TestBurstCountsDroppedConnections(t *testing.T) {
	const n = 10
	var k atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				if _, err := c.Read(buf); err != nil || k.Add(1)%2 == 0 {
					return // every second one is dropped
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	res := &capacityResult{calls: 1, delay: time.Second}
	start := time.Now()
	if err := burstAt(context.Background(), "http://"+ln.Addr().String(), "/", "", n, res); err != nil {
		t.Fatal(err)
	}
	if res.ok != n/2 || res.errors != n/2 || !strings.Contains(res.firstErr, "read") {
		t.Errorf("ok %d, errors %d (%q); want %d of each, the errors reads", res.ok, res.errors, res.firstErr, n/2)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v: a dropped connection must end its wait", el)
	}
}
