package eventloop

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"demo/internal/testkit"
)

// TestProjectPrefixesAreFoundAtRunTime: the watchdog finds this package's
// frames and the module's without being told their paths.
func TestProjectPrefixesAreFoundAtRunTime(t *testing.T) {
	fn := runtime.FuncForPC(reflect.ValueOf(New).Pointer()).Name()
	if !strings.HasPrefix(fn, loopPrefix) || fn[len(loopPrefix):] != "New" {
		t.Errorf("loop prefix %q does not name %s", loopPrefix, fn)
	}
	if !strings.HasPrefix(loopPrefix, projectPrefix) || !strings.HasSuffix(projectPrefix, "/") || projectPrefix == "/" {
		t.Errorf("project prefix %q does not hold the loop's %q", projectPrefix, loopPrefix)
	}
}

func TestCulpritKeepsProjectFramesAndTheBlockingCall(t *testing.T) {
	stack := `goroutine 7 [select]:
net/http.(*Transport).roundTrip(0xc000, 0xc001)
	/usr/local/go/src/net/http/transport.go:700 +0x1
net/http.(*Client).Do(...)
	/usr/local/go/src/net/http/client.go:590
demo/worker.(*app).blockingGet(0xc0002, {0x9, 0x1})
	/work/main/worker/app.go:190 +0x2
demo/worker.(*app).mixed(0xc0003, 0xc0004, 0xc0005)
	/work/main/worker/app.go:130 +0x3
demo/eventloop.(*Loop).call(0xc0006, 0xc0007)
	/work/main/eventloop/loop.go:120 +0x4
demo/eventloop.(*Loop).Run(0xc0006)
	/work/main/eventloop/loop.go:100 +0x4
demo/worker.Run({0x1})
	/work/main/worker/worker.go:200 +0x4
created by demo/worker.Run in goroutine 1
	/work/main/worker/worker.go:150 +0x5`
	got := culpritOf(stack, "demo/", "demo/eventloop.")
	want := "worker.(*app).mixed → worker.(*app).blockingGet → net/http.(*Client).Do"
	if got != want {
		t.Errorf("culprit %q, want %q", got, want)
	}

	// A handler resumed by the loop's client (an awaited call's response)
	// that then blocks: the client's frames are machinery too.
	resumed := `goroutine 7 [sleep]:
time.Sleep(0x11e1a300)
	/usr/local/go/src/runtime/time.go:300 +0x1
demo/worker.(*app).mixed(0xc0003, 0xc0004)
	/work/main/worker/steps.go:130 +0x3
demo/worker.(*request).onCall(0xc0003, 0xc0008, {0x0, 0x0})
	/work/main/worker/steps.go:100 +0x3
demo/eventloop/client.(*call).succeed(0xc0009)
	/work/main/eventloop/client/client.go:300 +0x2
demo/eventloop/client.(*call).onEvent(0xc0009, 0x1)
	/work/main/eventloop/client/client.go:200 +0x2
demo/eventloop.(*Loop).call(0xc0006, 0xc0007)
	/work/main/eventloop/loop.go:120 +0x4
demo/eventloop.(*Loop).Run(0xc0006)
	/work/main/eventloop/loop.go:100 +0x4`
	if got, want := culpritOf(resumed, "demo/", "demo/eventloop."), "worker.(*request).onCall → worker.(*app).mixed → time.Sleep"; got != want {
		t.Errorf("culprit after a client callback %q, want %q", got, want)
	}
}

// BenchmarkDetectorCost measures what the blocked-loop detector adds to a
// keep-alive /healthcheck round trip. A plain and a watched server run side
// by side and each iteration times one request on each, so both see the same
// machine noise; the result is reported as a ratio (cost-%).
func BenchmarkDetectorCost(b *testing.B) {
	body := []byte(`{"status":"ok"}`)
	healthcheck := func(w *ResponseWriter, r *Request) { w.Respond(200, "application/json", body) }
	plain := startServerWith(b, ServerConfig{}, func(*testServer) Handler { return healthcheck })
	watched := startServerWith(b, ServerConfig{}, func(ts *testServer) Handler {
		ts.loop.Watch(WatchConfig{Threshold: 100 * time.Millisecond, Report: func(Stall) {}})
		return func(w *ResponseWriter, r *Request) {
			ts.loop.Annotate(r.Method + " " + r.URL.Path) // what the worker's app does per request
			healthcheck(w, r)
		}
	})
	req := []byte("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	plainMed, watchedMed := testkit.SideBySide(b, testkit.NewRepeater(b, plain.dial(), req), testkit.NewRepeater(b, watched.dial(), req))
	b.ReportMetric(float64(plainMed.Nanoseconds()), "plain-ns/req")
	b.ReportMetric(float64(watchedMed.Nanoseconds()), "watched-ns/req")
	b.ReportMetric(100*(float64(watchedMed)/float64(plainMed)-1), "cost-%")
}

// BenchmarkCallbackBookkeeping is what the detector adds to each callback
// the loop runs, without the sockets around it: the same empty callback
// through Loop.call without and with a watchdog, side by side, reported
// as ns per callback each and their difference.
func BenchmarkCallbackBookkeeping(b *testing.B) {
	plain, err := New()
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	watched, err := New()
	if err != nil {
		b.Fatal(err)
	}
	defer watched.Close()
	watched.Watch(WatchConfig{Threshold: 100 * time.Millisecond, Report: func(Stall) {}})
	plain.now, watched.now = time.Now(), time.Now()
	fn := func() {}
	const round = 1000
	var plainTime, watchedTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		for range round {
			plain.call(fn)
		}
		t1 := time.Now()
		for range round {
			watched.call(fn)
		}
		plainTime += t1.Sub(t0)
		watchedTime += time.Since(t1)
	}
	n := float64(b.N) * round
	b.ReportMetric(float64(plainTime.Nanoseconds())/n, "plain-ns/callback")
	b.ReportMetric(float64(watchedTime.Nanoseconds())/n, "watched-ns/callback")
	b.ReportMetric(float64((watchedTime-plainTime).Nanoseconds())/n, "added-ns/callback")
}
