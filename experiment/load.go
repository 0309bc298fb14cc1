package experiment

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// burst fires n requests to GET url+"/" at the same instant, each on a
// fresh connection as separate httpie runs would, and from that instant
// until the last one finished probes url+"/healthcheck" every interval, each
// probe on a fresh connection too, like a load balancer. Times are offsets
// from the returned t0. Failed requests and probes are recorded, not
// returned as errors; only the end of ctx is.
func burst(ctx context.Context, url string, n int, interval, timeout time.Duration) (t0 time.Time, reqs []Request, probes []Probe, err error) {
	loadCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	reqs = make([]Request, n)
	fire := make(chan struct{})
	var ready, finished sync.WaitGroup
	for i := range n {
		ready.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			ready.Done()
			<-fire // t0 is set before fire closes
			sent := time.Since(t0)
			status, id, err := get(loadCtx, url+"/")
			reqs[i] = Request{Index: i + 1, ID: id, Sent: sent, Finished: time.Since(t0), Status: status}
			if err != nil {
				reqs[i].Err = err.Error()
			}
		}()
	}
	// The barrier: every request goroutine is parked on fire before it
	// closes, so none gets a head start.
	ready.Wait()
	t0 = time.Now()
	close(fire)

	allDone := make(chan struct{})
	go func() {
		finished.Wait() // every request ends by loadCtx's deadline
		close(allDone)
	}()

	var (
		mu     sync.Mutex
		probed sync.WaitGroup
	)
	probe := func() {
		probed.Add(1)
		go func() {
			defer probed.Done()
			sent := time.Since(t0)
			status, _, err := get(loadCtx, url+"/healthcheck")
			p := Probe{Sent: sent, Latency: time.Since(t0) - sent, Status: status}
			if err != nil {
				p.Err = err.Error()
			}
			mu.Lock()
			probes = append(probes, p)
			mu.Unlock()
		}()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	probe()
	for waiting := true; waiting; {
		select {
		case <-allDone:
			waiting = false
		case <-tick.C:
			if loadCtx.Err() == nil {
				probe()
			}
		}
	}
	// Probes still in flight are the interesting ones (a blocked loop
	// answers them last); they end by loadCtx's deadline at the latest.
	probed.Wait()
	if err := ctx.Err(); err != nil {
		return t0, nil, nil, err
	}
	// Probes finish in any order; the renderers want them by send time.
	sortProbes(probes)
	return t0, reqs, probes, nil
}

// get sends one GET on a fresh connection and reads the whole response. It
// returns the status and the server's request id.
func get(ctx context.Context, url string) (status int, requestID string, err error) {
	// A transport of its own and no keep-alive: a fresh TCP connection per
	// request, and no proxy from the environment in the way.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, "", fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, resp.Header.Get("X-Request-ID"), nil
}

func sortProbes(ps []Probe) {
	slices.SortFunc(ps, func(a, b Probe) int { return cmp.Compare(a.Sent, b.Sent) })
}
