package eventloop_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/eventloop"
	"demo/eventloop/client"
)

// These benchmarks drive the real eventloop.Server in-process, its loop on
// a goroutine labelled role=loop, so a CPU profile can be narrowed to the
// loop alone:
//
//	go test ./eventloop -run XXX -bench Loop -benchmem -cpuprofile cpu.out
//	go tool pprof -top -tagfocus role=loop eventloop.test cpu.out
//
// The loop runs the blocked-loop detector as a worker does by default.
//
// Besides ns/op (wall time per request, clients included) each reports
// loop-ns/req: CPU time of the loop's own thread per request, the in-process
// twin of demo bench's requests per server CPU-second. (BenchmarkServer-
// Healthcheck is the one-connection round trip, with nothing else running.)

// loopServer is an eventloop.Server on 127.0.0.1:0 with a worker-like
// router (the worker's app is internal to package worker).
type loopServer struct {
	addr string
	tid  int // the loop's OS thread
}

// The worker's bodies, byte for byte.
var (
	healthBody   = []byte(`{"status":"ok"}`)
	notFoundBody = []byte(`{"detail":"Not Found"}`)
)

// startLoopServer serves healthcheck, and /all-async making calls
// sequential GETs to external with the loop's own client, like the worker's
// async mode minus its log lines.
func startLoopServer(tb testing.TB, external string, calls int) *loopServer {
	tb.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(lfd) }) // runs after the loop's cleanup below
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Listen(lfd, 1024); err != nil {
		tb.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := eventloop.New()
	if err != nil {
		tb.Fatal(err)
	}
	started := false
	tb.Cleanup(func() {
		if !started {
			l.Close()
		}
	})
	// The blocked-loop detector, on as in a worker by default
	// (--slow-callback 100ms): its bookkeeping is part of every callback.
	l.Watch(eventloop.WatchConfig{Threshold: 100 * time.Millisecond, Report: func(eventloop.Stall) {}})
	cl := client.New(l, client.Config{})
	routes := map[string]eventloop.Handler{
		"/healthcheck": func(w *eventloop.ResponseWriter, _ *eventloop.Request) {
			w.Respond(http.StatusOK, "application/json", healthBody)
		},
		"/all-async": func(w *eventloop.ResponseWriter, _ *eventloop.Request) {
			var call func(n int)
			call = func(n int) {
				if n > calls {
					w.Respond(http.StatusOK, "application/json", healthBody)
					return
				}
				cl.Get(external, 10*time.Second, func(resp *client.Response, err error) {
					if err != nil || resp.StatusCode != http.StatusOK {
						w.Respond(http.StatusBadGateway, "application/json", healthBody)
						return
					}
					call(n + 1)
				})
			}
			call(1)
		},
	}
	// Labelled like the worker's routes, for the blocked-loop detector.
	labels := map[string]*string{}
	for path := range routes {
		label := "GET " + path
		labels[path] = &label
	}
	srv, err := eventloop.NewServer(l, lfd, eventloop.ServerConfig{ServerName: "demo"}, func(w *eventloop.ResponseWriter, r *eventloop.Request) {
		h, ok := routes[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			w.Respond(http.StatusNotFound, "application/json", notFoundBody)
			return
		}
		l.AnnotateWith(labels[r.URL.Path])
		h(w, r)
	})
	if err != nil {
		tb.Fatal(err)
	}
	ls := &loopServer{addr: "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)}
	ran := make(chan error, 1)
	tids := make(chan int, 1)
	started = true
	l.Post(func() { tids <- unix.Gettid() })
	go func() {
		// The label lets pprof tell the loop's samples from the clients'.
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("role", "loop")))
		ran <- l.Run()
	}()
	ls.tid = <-tids
	tb.Cleanup(func() {
		l.Post(func() {
			srv.Close()
			l.Stop()
		})
		if err := <-ran; err != nil {
			tb.Errorf("loop: %v", err)
		}
		if err := l.Close(); err != nil {
			tb.Errorf("loop close: %v", err)
		}
	})
	return ls
}

// threadCPU is the CPU time of one of our threads, in nanoseconds from
// schedstat (its first field) rather than stat's 10 ms ticks, so that even a
// short -benchtime gives a figure.
func threadCPU(tb testing.TB, tid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		tb.Fatalf("empty schedstat")
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ns)
}

// driveKeepAlive sends total requests for path over conns keep-alive
// connections, pipeline at a time, and checks that every response is a
// 200 of the same size (the Date header is fixed-width). It returns the
// first failure.
func driveKeepAlive(addr, path string, conns, pipeline int, total int64) error {
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	batch := bytes.Repeat(req, pipeline)
	var (
		left     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	left.Store(total)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
				fail(err)
				return
			}
			size, err := learnSize(c, req)
			if err != nil {
				fail(err)
				return
			}
			buf := make([]byte, size*pipeline)
			for {
				n := int64(pipeline)
				if left.Add(-n) < 0 {
					return
				}
				if _, err := c.Write(batch); err != nil {
					fail(err)
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					fail(err)
					return
				}
				for i := 0; i < len(buf); i += size {
					if !bytes.HasPrefix(buf[i:], []byte("HTTP/1.1 200 OK\r\n")) {
						fail(fmt.Errorf("response %q", buf[i:min(len(buf), i+40)]))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// learnSize sends one request with net/http's parser checking the answer
// and returns the response's size in bytes.
func learnSize(c net.Conn, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	var raw bytes.Buffer
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &raw)), nil)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, healthBody) {
		return 0, fmt.Errorf("first response: %d %q", resp.StatusCode, body)
	}
	// The bufio.Reader may read ahead only what this response holds: the
	// client sent one request.
	return raw.Len(), nil
}

func benchmarkLoop(b *testing.B, conns, pipeline int) {
	s := startLoopServer(b, "", 0)
	b.ReportAllocs()
	cpu0 := threadCPU(b, s.tid)
	b.ResetTimer()
	if err := driveKeepAlive(s.addr, "/healthcheck", conns, pipeline, int64(b.N)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(threadCPU(b, s.tid)-cpu0)/float64(b.N), "loop-ns/req")
}

// BenchmarkLoopHealthcheck: 16 keep-alive connections, one request in
// flight on each, like wrk -c16.
func BenchmarkLoopHealthcheck(b *testing.B) { benchmarkLoop(b, 16, 1) }

// BenchmarkLoopPipelined: 16 connections, 16 requests per write.
func BenchmarkLoopPipelined(b *testing.B) { benchmarkLoop(b, 16, 16) }

// BenchmarkLoopAsyncCalls: GET /all-async making 2 calls each to an
// in-process net/http server that answers at once: what the loop spends per
// request of the capacity scenario, minus the worker's log lines.
func BenchmarkLoopAsyncCalls(b *testing.B) {
	s := startLoopServer(b, instantExternal(b)+"/", 2)
	b.ReportAllocs()
	cpu0 := threadCPU(b, s.tid)
	b.ResetTimer()
	if err := driveKeepAlive(s.addr, "/all-async", 16, 1, int64(b.N)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(threadCPU(b, s.tid)-cpu0)/float64(b.N), "loop-ns/req")
}

// TestLoopBenchmarkDriver runs the benchmarks' machinery briefly, so that
// `go test` keeps it correct without timing anything.
func TestLoopBenchmarkDriver(t *testing.T) {
	s := startLoopServer(t, instantExternal(t)+"/healthcheck", 2)
	for _, c := range []struct {
		path     string
		pipeline int
	}{{"/healthcheck", 1}, {"/healthcheck", 8}, {"/all-async", 1}} {
		if err := driveKeepAlive(s.addr, c.path, 4, c.pipeline, 200); err != nil {
			t.Errorf("%s ×%d: %v", c.path, c.pipeline, err)
		}
	}
	if err := driveKeepAlive(s.addr, "/missing", 1, 1, 1); err == nil {
		t.Error("a 404 should fail the driver's check")
	}
}

// instantExternal is a net/http server that answers every request at once
// with the health body, for the test's duration; it returns its URL.
func instantExternal(tb testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(healthBody)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}
