package worker

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"demo/eventloop"
)

// BenchmarkAppHealthcheck measures keep-alive GET /healthcheck round trips
// through the worker's own router (app.serve, route labels, access log
// through the direct line path) on a real loop over loopback: allocs/op is
// what the worker adds to eventloop's BenchmarkServerHealthcheck.
func BenchmarkAppHealthcheck(b *testing.B) {
	addr := serveAppInProcess(b, baseConfig())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	// Every response has the same length (Date is fixed-width): learn it.
	size := 0
	for got := 0; size == 0 || got < size; {
		n, err := c.Read(buf[got:])
		if err != nil {
			b.Fatal(err)
		}
		got += n
		if i := bytes.Index(buf[:got], []byte("\r\n\r\n")); i >= 0 && size == 0 {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:i+4])), nil)
			if err != nil {
				b.Fatal(err)
			}
			size = i + 4 + int(resp.ContentLength)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < size; {
			n, err := c.Read(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

// serveAppInProcess runs the worker's app on a loop goroutine of this
// process, listening on 127.0.0.1:0, with the access log on through a
// direct line writer that drops the lines; it stops when tb ends.
func serveAppInProcess(tb testing.TB, cfg Config) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	loop, err := eventloop.New()
	if err != nil {
		tb.Fatal(err)
	}
	log := zap.New(&lineRecorder{Core: zapcore.NewNopCore()})
	spec, err := LoadApp(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	a := newApp(loop, cfg, spec, log, nil)
	srv, err := eventloop.NewServer(loop, int(f.Fd()), a.serverConfig(), a.serve)
	if err != nil {
		tb.Fatal(err)
	}
	a.srv = srv
	done := make(chan error, 1)
	go func() { done <- loop.Run() }()
	tb.Cleanup(func() {
		loop.Post(func() { srv.Close(); loop.Stop() })
		select {
		case err := <-done:
			if err != nil {
				tb.Error(err)
			}
		case <-time.After(5 * time.Second):
			tb.Error("loop did not stop")
		}
		loop.Close()
	})
	return ln.Addr().String()
}
