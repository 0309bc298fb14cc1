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

func TestProbeCountsFailuresSlowAnswersAndWaitsForThem(t *testing.T) {
	var n atomic.Int64
	third := make(chan struct{})
	url := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		switch k := n.Add(1); {
		case k == 1:
			time.Sleep(150 * time.Millisecond) // slow, and still in flight when stopped early
		case k%3 == 0:
			if k == 3 {
				close(third)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	started := false
	done := make(chan struct{})
	var res ProbeResult
	var err error
	go func() {
		defer close(done)
		res, err = Probe(ctx, url+"/healthcheck", 5*time.Millisecond, time.Second, func() { started = true })
	}()
	<-third // the slow first probe is still being answered
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !started {
		t.Error("started was not called")
	}
	if got := n.Load(); int64(res.Probes) != got {
		t.Errorf("%d probes counted, the server answered %d: in-flight probes must be waited for", res.Probes, got)
	}
	if res.Over100 < 1 || res.Max < 150*time.Millisecond {
		t.Errorf("slow probes %d, max %v; want the first one, ≥ 150ms", res.Over100, res.Max)
	}
	if want := res.Probes / 3; res.Failed != want || !strings.Contains(res.FirstErr, "status 503") {
		t.Errorf("failed %d of %d (%q); want %d, status 503", res.Failed, res.Probes, res.FirstErr, want)
	}
	if res.P50 <= 0 || res.P50 > res.Max {
		t.Errorf("p50 %v, max %v", res.P50, res.Max)
	}
}

func TestProbeTargetsOnly127001(t *testing.T) {
	called := false
	if _, err := Probe(context.Background(), "http://example.com/", time.Millisecond, time.Second, func() { called = true }); err == nil || called {
		t.Errorf("err %v, started %v; want a refusal before any probe", err, called)
	}
}

// Every arrival is a connection of its own, and they come at a pace, not
// all at once.
func TestArriveOpensOneConnectionPerRequestAtAPace(t *testing.T) {
	var conns, reqs atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			reqs.Add(1)
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	url := serveServer(t, srv)
	const n, over = 50, 250 * time.Millisecond
	res := arrive(context.Background(), url+"/healthcheck", n, over)
	if res.sent != n || res.ok != n || res.errors != 0 || res.non2xx != 0 {
		t.Fatalf("sent %d, ok %d, errors %d (%s), non-2xx %d; want %d ok", res.sent, res.ok, res.errors, res.firstErr, res.non2xx, n)
	}
	if conns.Load() != n || reqs.Load() != n {
		t.Errorf("the server saw %d connections and %d requests; want %d of each", conns.Load(), reqs.Load(), n)
	}
	// The last arrival is due at (n-1)/n of over.
	if lo := over * (n - 1) / n; res.took < lo || res.took > 10*over {
		t.Errorf("took %v; want at least %v (paced) and not much more", res.took, lo)
	}
	if res.lat.n != n {
		t.Errorf("%d latencies recorded, want %d", res.lat.n, n)
	}
}
