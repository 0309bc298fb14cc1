package worker

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"demo/appspec"
	"demo/eventloop"
	"demo/internal/testkit"
)

// BenchmarkAppHealthcheck measures what the worker's own router (app.serve:
// route lookup, labels for the detector, the access log through the direct
// line path) adds to a keep-alive GET /healthcheck round trip. A bare
// eventloop server and the worker's app run side by side in this process;
// each iteration times one request on each, and allocations per request
// are counted on each alone afterwards.
func BenchmarkAppHealthcheck(b *testing.B) {
	body := []byte(`{"status":"ok"}`)
	bare := serveInProcess(b, func(*eventloop.Loop) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server)) {
		return eventloop.ServerConfig{}, func(w *eventloop.ResponseWriter, _ *eventloop.Request) { w.Respond(200, jsonType, body) }, nil
	})
	app := serveAppInProcess(b, baseConfig())
	req := []byte("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	clients := []*testkit.Repeater{dialRepeater(b, bare, req), dialRepeater(b, app, req)}
	bareMed, appMed := testkit.SideBySide(b, clients[0], clients[1])
	b.ReportMetric(float64(bareMed.Nanoseconds()), "bare-ns/req")
	b.ReportMetric(float64(appMed.Nanoseconds()), "app-ns/req")
	b.ReportMetric(100*(float64(appMed)/float64(bareMed)-1), "cost-%")
	b.ReportMetric(allocsPerRoundTrip(b, clients[0]), "bare-allocs/req")
	b.ReportMetric(allocsPerRoundTrip(b, clients[1]), "app-allocs/req")
}

// allocsPerRoundTrip counts the process's allocations per round trip of c
// (the raw client allocates none).
func allocsPerRoundTrip(b *testing.B, c *testkit.Repeater) float64 {
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		c.RoundTrip(b)
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / n
}

// dialRepeater repeats req to the server at addr.
func dialRepeater(b *testing.B, addr string, req []byte) *testkit.Repeater {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return testkit.NewRepeater(b, conn, req)
}

// serveAppInProcess runs the worker's app for cfg on a loop goroutine of
// this process, the access log on through a direct line writer that drops
// the lines, and returns its address.
func serveAppInProcess(tb testing.TB, cfg Config) string {
	tb.Helper()
	spec, err := LoadApp(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	lines := &lineRecorder{Core: zapcore.NewNopCore()}
	cfg.InfoLines = lines // as main does with package logs' console logger
	return serveAppSpec(tb, cfg, spec, zap.New(lines))
}

// serveAppWithLogger is serveAppInProcess with every line through log.
func serveAppWithLogger(tb testing.TB, cfg Config, log *zap.Logger) string {
	tb.Helper()
	spec, err := LoadApp(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.InfoLines = nil
	return serveAppSpec(tb, cfg, spec, log)
}

func serveAppSpec(tb testing.TB, cfg Config, spec *appspec.App, log *zap.Logger) string {
	tb.Helper()
	return serveInProcess(tb, func(loop *eventloop.Loop) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server)) {
		a := newApp(loop, cfg, spec, log, nil)
		return a.serverConfig(), a.serve, func(srv *eventloop.Server) { a.srv = srv }
	})
}

// serveInProcess runs an eventloop server on 127.0.0.1:0 on a loop
// goroutine of this process until tb ends, and returns its address. setup
// gives the server's config and handler, and what to tell once it exists.
func serveInProcess(tb testing.TB, setup func(*eventloop.Loop) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server))) string {
	tb.Helper()
	_, addr := serveLoopInProcess(tb, setup)
	return addr
}

// serveLoopInProcess is serveInProcess, returning the loop too.
func serveLoopInProcess(tb testing.TB, setup func(*eventloop.Loop) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server))) (*eventloop.Loop, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close() // f is a dup, still listening
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	loop, err := eventloop.New()
	if err != nil {
		tb.Fatal(err)
	}
	cfg, h, made := setup(loop)
	srv, err := eventloop.NewServer(loop, int(f.Fd()), cfg, h)
	if err != nil {
		tb.Fatal(err)
	}
	if made != nil {
		made(srv)
	}
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
	return loop, ln.Addr().String()
}

// BenchmarkAppRouteLines measures an app route's whole per-request log
// path: GET /all-async with no external call logs `<id>: started
// processing`, `<id>: finished!` and the access line. "console" writes them
// through the direct line writer, as `demo worker` does by default; "json"
// through zap's JSON encoder, as with --log-format json. The bare eventloop
// server beside it answers the same request without a line; app-allocs/req
// minus bare-allocs/req is what the route, its request id and its lines
// cost.
func BenchmarkAppRouteLines(b *testing.B) {
	body := []byte(`{"message":"hello world"}`)
	bare := serveInProcess(b, func(*eventloop.Loop) (eventloop.ServerConfig, eventloop.Handler, func(*eventloop.Server)) {
		return eventloop.ServerConfig{}, func(w *eventloop.ResponseWriter, _ *eventloop.Request) { w.Respond(200, jsonType, body) }, nil
	})
	cfg := baseConfig()
	cfg.Calls = 0
	req := []byte("GET /all-async HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	for _, format := range []string{"console", "json"} {
		b.Run(format, func(b *testing.B) {
			var app string
			if format == "console" {
				app = serveAppInProcess(b, cfg)
			} else {
				enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
				app = serveAppWithLogger(b, cfg, zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zap.InfoLevel)).Named("worker-1[123]"))
			}
			clients := []*testkit.Repeater{dialRepeater(b, bare, req), dialRepeater(b, app, req)}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				clients[i%2].RoundTrip(b)
			}
			b.StopTimer()
			b.ReportMetric(allocsPerRoundTrip(b, clients[0]), "bare-allocs/req")
			b.ReportMetric(allocsPerRoundTrip(b, clients[1]), "app-allocs/req")
		})
	}
}
