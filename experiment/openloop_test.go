package experiment

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// okServer answers every request at once.
func okServer(t *testing.T) rawServer {
	return startRawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
}

func TestGeneratorSendsEveryArrivalOnTime(t *testing.T) {
	var served atomic.Int64
	s := startRawServer(t, func(c net.Conn) {
		served.Add(1)
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	o := OpenLoop{Rate: 200, Duration: 500 * time.Millisecond, Mix: Mix{{"/a", 1}, {"/b", 1}}, Seed: 3}
	g := generator{ep: s.endpoint(t), paths: o.Mix.Paths(), timeout: 5 * time.Second, limit: 1000}
	reqs, peak := g.run(context.Background(), o.Schedule(), time.Now())
	if len(reqs) != 100 || served.Load() != 100 {
		t.Fatalf("%d requests, %d served; want 100", len(reqs), served.Load())
	}
	routes := map[string]int{}
	for _, q := range reqs {
		routes[q.Route]++
		if !q.OK() {
			t.Errorf("request %d: %+v", q.Index, q)
		}
		// Generous for a shared machine; the e2e test measures the rate.
		if q.Lag() > 200*time.Millisecond || q.Finished < q.Sent {
			t.Errorf("request %d: lag %v, sent %v, finished %v", q.Index, q.Lag(), q.Sent, q.Finished)
		}
	}
	if routes["/a"] == 0 || routes["/b"] == 0 || routes["/a"]+routes["/b"] != 100 {
		t.Errorf("routes %v", routes)
	}
	if peak < 1 {
		t.Errorf("peak in flight %d", peak)
	}
}

func TestGeneratorNeverExceedsItsLimit(t *testing.T) {
	release := make(chan struct{})
	s := startRawServer(t, func(c net.Conn) {
		readRequest(c)
		<-release
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	o := OpenLoop{Rate: 100, Duration: 100 * time.Millisecond, Mix: Mix{{"/", 1}}}
	g := generator{ep: s.endpoint(t), paths: o.Mix.Paths(), timeout: 5 * time.Second, limit: 4}
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	reqs, peak := g.run(context.Background(), o.Schedule(), time.Now())
	var ok, notSent int
	for _, q := range reqs {
		switch {
		case q.OK():
			ok++
		case q.Cause == CauseNotSent && strings.Contains(q.Err, "open-files limit"):
			notSent++
		default:
			t.Errorf("request %d: %+v", q.Index, q)
		}
	}
	if peak != 4 || ok != 4 || notSent != 6 {
		t.Errorf("peak %d, %d answered, %d not sent; want 4, 4, 6", peak, ok, notSent)
	}
	if maxInFlight() < 1000 {
		t.Logf("open-files limit leaves room for only %d requests in flight", maxInFlight())
	}
}

func TestGeneratorStopsWhenCancelled(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	s := startRawServer(t, func(c net.Conn) {
		readRequest(c)
		<-hold
	})
	o := OpenLoop{Rate: 10, Duration: 10 * time.Second, Mix: Mix{{"/", 1}}}
	g := generator{ep: s.endpoint(t), paths: o.Mix.Paths(), timeout: time.Minute, limit: 1000}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	start := time.Now()
	reqs, _ := g.run(ctx, o.Schedule(), start)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v after the cancel at 1s", took)
	}
	if len(reqs) == 0 || len(reqs) > 30 {
		t.Fatalf("%d requests dispatched in about a second at 10/s", len(reqs))
	}
	for _, q := range reqs {
		if q.Cause != CauseInterrupted {
			t.Errorf("request %d: cause %q, want %q", q.Index, q.Cause, CauseInterrupted)
		}
	}
}

func TestProberProbesUntilStopped(t *testing.T) {
	s := okServer(t)
	var seen atomic.Int64
	t0 := time.Now()
	p := startProber(context.Background(), s.endpoint(t), "/healthcheck", 20*time.Millisecond, time.Second, t0, func(Probe) { seen.Add(1) })
	time.Sleep(200 * time.Millisecond)
	ps := p.Stop()
	if len(ps) < 3 || int64(len(ps)) != seen.Load() {
		t.Fatalf("%d probes (%d seen), want several, each seen once", len(ps), seen.Load())
	}
	for i, pr := range ps {
		if !pr.OK() || (i > 0 && pr.Sent < ps[i-1].Sent) {
			t.Errorf("probe %d: %+v", i, pr)
		}
	}
	if ps[0].Sent > 50*time.Millisecond {
		t.Errorf("first probe at %v, want at once", ps[0].Sent)
	}
}

func TestDownWatchWantsRefusalsForAWhile(t *testing.T) {
	var fired []Probe
	var lastAnswer time.Duration
	w := newDownWatch(func(first Probe, last time.Duration) {
		fired = append(fired, first)
		lastAnswer = last
	})
	refused := func(at int) Probe {
		return Probe{Sent: ms(at), Cause: CauseRefused, Err: "connect: connection refused"}
	}
	w.see(Probe{Sent: 0, Status: 200})
	w.see(Probe{Sent: ms(100), Status: 200, Latency: 5 * time.Second}) // slow is not gone
	w.see(Probe{Sent: ms(200), Cause: CauseTimeout})                   // nor is a timeout
	w.see(refused(300))
	w.see(refused(1000))
	w.see(Probe{Sent: ms(1100), Status: 200}) // back: the streak starts over
	w.see(refused(1200))
	w.see(refused(2000))
	w.see(refused(3000))
	if len(fired) != 0 {
		t.Fatalf("fired after %v of refusals", ms(3000-1200))
	}
	w.see(refused(3300))
	w.see(refused(3400))
	if len(fired) != 1 || fired[0].Sent != ms(1200) || lastAnswer != ms(1100) {
		t.Errorf("fired %v (last answer %v), want once, from 1.2s, last answer 1.1s", fired, lastAnswer)
	}
}
