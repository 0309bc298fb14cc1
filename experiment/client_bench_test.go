package experiment

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The experiment's client against the obvious alternative, net/http's
// Transport with keep-alives off (a fresh connection per request too), in
// the same run: what one request in flight costs (goroutines, memory) and
// what one round trip costs (time, allocations). These are the numbers
// behind choosing a client of our own (see client.go).
//
//	go test ./experiment -run XXX -bench Client

// transportGet is the alternative: one shared Transport, no keep-alive.
func transportGet(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

func BenchmarkClientInFlightCost(b *testing.B) {
	const n = 1000
	release := make(chan struct{})
	var accepted sync.WaitGroup
	s := startRawServer(b, func(c net.Conn) {
		readRequest(c)
		accepted.Done()
		<-release
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	url := s.URL() + "/"
	ep := s.endpoint(b)
	tr := &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}
	hc := &http.Client{Transport: tr}

	// measure holds n requests in flight and returns goroutines and bytes
	// (heap + stacks) per request.
	measure := func(send func()) (goroutines, bytes float64) {
		runtime.GC()
		var before, during runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		release = make(chan struct{})
		accepted.Add(n)
		var done sync.WaitGroup
		for range n {
			done.Add(1)
			go func() {
				defer done.Done()
				send()
			}()
		}
		accepted.Wait()
		runtime.ReadMemStats(&during)
		g1 := runtime.NumGoroutine()
		close(release)
		done.Wait()
		// The server's n goroutines are in both counts; take them out.
		goroutines = float64(g1-g0-n) / n
		bytes = float64(during.HeapInuse+during.StackInuse-before.HeapInuse-before.StackInuse) / n
		return goroutines, bytes
	}
	var oursG, oursB, trG, trB float64
	for range b.N {
		g, by := measure(func() { ep.get(context.Background(), "/", time.Now().Add(time.Minute)) })
		oursG, oursB = oursG+g, oursB+by
		g, by = measure(func() { _ = transportGet(hc, url) })
		trG, trB = trG+g, trB+by
		tr.CloseIdleConnections()
	}
	nf := float64(b.N)
	b.ReportMetric(oursG/nf, "ours-goroutines/req")
	b.ReportMetric(trG/nf, "transport-goroutines/req")
	b.ReportMetric(oursB/nf/1024, "ours-KiB/req")
	b.ReportMetric(trB/nf/1024, "transport-KiB/req")
	b.ReportMetric(trB/oursB, "transport/ours-memory")
}

func BenchmarkClientRoundTrip(b *testing.B) {
	s := startRawServer(b, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}")
	})
	url := s.URL() + "/healthcheck"
	ep := s.endpoint(b)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	// Alternate in rounds so that the machine's noise falls on both alike.
	var ours, theirs time.Duration
	var oursAllocs, theirAllocs uint64
	var ms runtime.MemStats
	const round = 50
	for done := 0; done < b.N; done += round {
		runtime.ReadMemStats(&ms)
		a0, t0 := ms.Mallocs, time.Now()
		for range round {
			if r := ep.get(context.Background(), "/healthcheck", time.Now().Add(5*time.Second)); r.err != nil {
				b.Fatal(r.err)
			}
		}
		ours += time.Since(t0)
		runtime.ReadMemStats(&ms)
		a1, t1 := ms.Mallocs, time.Now()
		oursAllocs += a1 - a0
		for range round {
			if err := transportGet(hc, url); err != nil {
				b.Fatal(err)
			}
		}
		theirs += time.Since(t1)
		runtime.ReadMemStats(&ms)
		theirAllocs += ms.Mallocs - a1
	}
	n := float64((b.N + round - 1) / round * round)
	b.ReportMetric(float64(ours.Microseconds())/n, "ours-µs/req")
	b.ReportMetric(float64(theirs.Microseconds())/n, "transport-µs/req")
	b.ReportMetric(float64(oursAllocs)/n, "ours-allocs/req")
	b.ReportMetric(float64(theirAllocs)/n, "transport-allocs/req")
	b.ReportMetric(float64(theirs)/float64(ours), "transport/ours-time")
}
