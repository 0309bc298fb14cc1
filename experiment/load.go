package experiment

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// burst fires n requests to path at the same instant, each on a fresh
// connection as separate httpie runs would, and from that instant until
// the last one finished probes the health path every interval, each probe
// on a fresh connection too, like a load balancer. Times are offsets from
// the returned t0; every request and probe gives up after timeout. Failed
// requests and probes are recorded, not returned as errors; only the end
// of ctx is.
func burst(ctx context.Context, ep endpoint, path string, n int, st Settings, timeout time.Duration) (t0 time.Time, reqs []Request, probes []Probe, err error) {
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
			q := Request{Index: i + 1, Route: path, Sent: time.Since(t0)}
			r := ep.get(ctx, path, t0.Add(timeout))
			q.Finished, q.Status, q.ID, q.Cause = r.done.Sub(t0), r.status, r.requestID, r.cause
			if r.err != nil {
				q.Err = r.err.Error()
			}
			reqs[i] = q
		}()
	}
	// The barrier: every request goroutine is parked on fire before it
	// closes, so none gets a head start.
	ready.Wait()
	t0 = time.Now()
	close(fire)
	p := startProber(ctx, ep, st.healthPath(), st.ProbeInterval, timeout, t0, nil)
	finished.Wait() // every request ends by its deadline
	probes = p.Stop()
	if err := ctx.Err(); err != nil {
		return t0, nil, nil, err
	}
	return t0, reqs, probes, nil
}

// baseline sends n health probes one after the other, interval apart, and
// returns them: how the server answers before the burst.
func baseline(ctx context.Context, ep endpoint, st Settings, n int, timeout time.Duration) []Probe {
	t0 := time.Now()
	var out []Probe
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return out
			case <-time.After(st.ProbeInterval):
			}
		}
		sent := time.Since(t0)
		out = append(out, toProbe(sent, ep.get(ctx, st.healthPath(), t0.Add(sent+timeout)), t0))
	}
	return out
}

func sortProbes(ps []Probe) {
	slices.SortFunc(ps, func(a, b Probe) int { return cmp.Compare(a.Sent, b.Sent) })
}
