package worker

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"demo/eventloop"
)

// BenchmarkAsyncInFlightMemory is the capacity scenario in miniature: what
// the worker's memory holds per idle connection, and per GET /all-async in
// flight while its call to the external API waits, n of each at once. The
// figure is the live heap after a collection, which is what a burst's peak
// RSS grows with (the collector lets the heap reach about twice it). The
// bare eventloop server beside it holds n requests with a handler that
// only keeps them: the server's own share, app/server the app's on top.
//
// The external API is a listening socket nobody accepts on: the kernel
// completes the worker's connections and queues their requests, so each
// call waits without anything of this process on the other side. The
// clients are raw sockets, so nothing of theirs is in the heap either.
//
//	go test ./worker -run XXX -bench AsyncInFlightMemory
func BenchmarkAsyncInFlightMemory(b *testing.B) {
	const n = 1000
	var idle, app, bare float64
	for range b.N {
		i, a := measureInFlight(b, n, true, func(loop *eventloop.Loop, external string) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server)) {
			cfg := baseConfig()
			cfg.External, cfg.Calls, cfg.AccessLog = external, 2, false
			cfg.InfoLines = &lineRecorder{Core: zapcore.NewNopCore()}
			spec, err := LoadApp(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ap := newApp(loop, cfg, spec, zap.New(cfg.InfoLines.(*lineRecorder)), nil)
			return ap.serverConfig(), ap.serve, func(srv *eventloop.Server) { ap.srv = srv }
		})
		_, s := measureInFlight(b, n, false, func(*eventloop.Loop, string) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server)) {
			var held []*eventloop.ResponseWriter // answered when the server closes
			return eventloop.ServerConfig{}, func(w *eventloop.ResponseWriter, _ *eventloop.Request) { held = append(held, w) }, nil
		})
		idle, app, bare = idle+i, app+a, bare+s
	}
	nf := float64(b.N)
	b.ReportMetric(idle/nf, "idle-B/conn")
	b.ReportMetric(app/nf, "app-B/req")
	b.ReportMetric(bare/nf, "server-B/req")
	b.ReportMetric(app/bare, "app/server")
}

// measureInFlight serves setup's handler in this process, opens n
// connections to it, then sends GET /all-async on each and waits until all
// n are in flight. It returns the live heap per idle connection, and per
// request in flight beyond its connection. Everything it opened is closed
// when it returns; calls says the handler calls the external API, whose
// calls then fail, and the requests are answered, before it stops the
// server.
func measureInFlight(b *testing.B, n int, calls bool, setup func(*eventloop.Loop, string) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server))) (perConn, perReq float64) {
	b.Helper()
	sc := &scope{TB: b}
	defer sc.close()
	external, closeExternal := silentListener(sc, n)
	var srv *eventloop.Server
	loop, addr := serveLoopInProcess(sc, func(loop *eventloop.Loop) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server)) {
		cfg, h, made := setup(loop, "http://"+external)
		return cfg, h, func(s *eventloop.Server) {
			srv = s
			if made != nil {
				made(s)
			}
		}
	})
	stats := func() (st eventloop.ServerStats) {
		done := make(chan struct{})
		loop.Post(func() { st = srv.Stats(); close(done) })
		<-done
		return st
	}
	waitFor := func(what string, ok func(eventloop.ServerStats) bool) {
		for deadline := time.Now().Add(10 * time.Second); !ok(stats()); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("timed out waiting for %s: %+v", what, stats())
			}
		}
	}
	live := func() float64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc)
	}
	clients := make([]int, 0, n)
	sc.Cleanup(func() {
		for _, fd := range clients {
			unix.Close(fd)
		}
	})
	port, _ := strconv.Atoi(addr[len("127.0.0.1:"):])
	before := live()
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, fd)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor("the connections", func(st eventloop.ServerStats) bool { return st.Conns == n })
	idle := live()
	req := []byte("GET /all-async HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: demo-bench\r\n\r\n")
	for _, fd := range clients {
		if _, err := unix.Write(fd, req); err != nil {
			b.Fatal(err)
		}
	}
	waitFor("the requests", func(st eventloop.ServerStats) bool { return st.InFlight == n })
	busy := live()
	closeExternal()
	if calls { // they fail (reset), and the app answers the requests
		waitFor("the answers", func(st eventloop.ServerStats) bool { return st.InFlight == 0 })
	}
	return (idle - before) / float64(n), (busy - idle) / float64(n)
}

// scope is a testing.TB whose cleanups run when close is called, so that a
// benchmark's iterations each release what they opened.
type scope struct {
	testing.TB
	fns []func()
}

func (s *scope) Cleanup(fn func()) { s.fns = append(s.fns, fn) }

func (s *scope) close() {
	for i := len(s.fns) - 1; i >= 0; i-- {
		s.fns[i]()
	}
}

// silentListener listens on 127.0.0.1 with room for n connections and
// never accepts: a connection to it completes in the kernel, and what is
// sent on it waits there. Closing it resets them all.
func silentListener(b testing.TB, n int) (addr string, shut func()) {
	b.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	shut = sync.OnceFunc(func() { unix.Close(fd) })
	b.Cleanup(shut)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	if err := unix.Listen(fd, n+64); err != nil {
		b.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port), shut
}
