package worker

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"demo/contract"
	"demo/eventloop"
)

// lineRecorder is a core offering InfoLineWriter, like demo worker's
// console core; everything else it drops.
type lineRecorder struct {
	zapcore.Core
	names, msgs []string
	count       int
	record      bool
}

func (r *lineRecorder) WriteInfo(name string, msg []byte) {
	r.count++
	if r.record {
		r.names = append(r.names, name)
		r.msgs = append(r.msgs, string(msg))
	}
}

func newTestApp(t *testing.T, log *zap.Logger) *app {
	t.Helper()
	loop, err := eventloop.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Close() })
	cfg := baseConfig()
	if lines, ok := log.Core().(InfoLineWriter); ok {
		cfg.InfoLines = lines // as main does with package logs' console logger
	}
	spec, err := LoadApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return newApp(loop, cfg, spec, log, nil)
}

// TestPerRequestLinesSkipZapWhenTheCoreCan: with a core offering
// InfoLineWriter, the access line goes to it, named, without allocating;
// with any other core it goes through zap.
func TestPerRequestLinesSkipZapWhenTheCoreCan(t *testing.T) {
	const want = `127.0.0.1:54321 - "GET /healthcheck HTTP/1.1" 200`

	rec := &lineRecorder{Core: zapcore.NewNopCore(), record: true}
	a := newTestApp(t, zap.New(rec).Named("worker-1[123]"))
	a.accessLog("127.0.0.1:54321", "GET", "/healthcheck", "HTTP/1.1", 200, nil)
	a.line = contract.AppendCall(a.line[:0], "id", 1, "200 OK")
	a.info(a.line)
	if len(rec.msgs) != 2 || rec.msgs[0] != want || rec.msgs[1] != "id 1: <Response [200 OK]>" || rec.names[0] != "worker-1[123]" {
		t.Errorf("direct lines %q named %q", rec.msgs, rec.names)
	}

	rec.record = false
	allocs := testing.AllocsPerRun(100, func() {
		a.accessLog("127.0.0.1:54321", "GET", "/healthcheck", "HTTP/1.1", 200, nil)
	})
	if allocs != 0 || rec.count != 2+101 {
		t.Errorf("%v allocations per access line, %d lines", allocs, rec.count)
	}

	core, logs := observer.New(zap.InfoLevel)
	a = newTestApp(t, zap.New(core).Named("worker-1[123]"))
	a.accessLog("127.0.0.1:54321", "GET", "/healthcheck", "HTTP/1.1", 200, nil)
	if got := logs.All(); len(got) != 1 || got[0].Message != want || got[0].LoggerName != "worker-1[123]" || got[0].Level != zap.InfoLevel {
		t.Errorf("through zap: %+v", got)
	}
}
