package experiment

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// fdReserve is how many file descriptors the generator leaves for
// everything else: the children's pipes, the probes, the Go runtime.
const fdReserve = 256

// maxInFlight is how many requests the generator may hold open at once:
// each holds one file descriptor, under the process's open-files limit (the
// Go runtime raises the soft limit to the hard one at start-up).
func maxInFlight() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024 - fdReserve
	}
	return int(min(max(lim.Cur, 2*fdReserve), 1<<20)) - fdReserve
}

// generator sends open-loop arrivals: each request leaves at its scheduled
// time whatever happened to the earlier ones, on a goroutine and a
// connection of its own.
type generator struct {
	ep      endpoint
	paths   []string      // the mix's routes, indexed by arrival.route
	timeout time.Duration // per request, from its scheduled time
	limit   int           // most requests in flight; beyond it an arrival is not sent
}

// run sends arrivals, timed from t0, and returns once every request sent
// has ended, with the most requests that were in flight at once. When ctx
// ends it stops sending, the requests in flight end at once, and the
// result holds only the arrivals dispatched so far.
//
// One goroutine dispatches: it sleeps until the next arrival is due, and
// when it is behind (a busy machine) it sends every arrival already due at
// once, so lateness never accumulates into a lower rate. Each request
// records its own lag (sent − scheduled), the measure of whether the
// generator kept up.
func (g *generator) run(ctx context.Context, arrivals []arrival, t0 time.Time) (reqs []Request, peak int) {
	reqs = make([]Request, len(arrivals))
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		top      atomic.Int64
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	dispatched := 0
dispatch:
	for i, a := range arrivals {
		if wait := a.at - time.Since(t0); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break dispatch
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break dispatch
		}
		dispatched = i + 1
		q := &reqs[i]
		*q = Request{Index: i + 1, Route: g.paths[a.route], Scheduled: a.at}
		n := inFlight.Add(1)
		if n > int64(g.limit) {
			inFlight.Add(-1)
			q.Sent = time.Since(t0)
			q.Finished = q.Sent
			q.Cause = CauseNotSent
			q.Err = fmt.Sprintf("not sent: %d requests already in flight, the most the open-files limit allows", g.limit)
			continue
		}
		for cur := top.Load(); n > cur && !top.CompareAndSwap(cur, n); cur = top.Load() {
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			q.Sent = time.Since(t0)
			r := g.ep.get(ctx, q.Route, t0.Add(q.Scheduled+g.timeout))
			q.Finished = r.done.Sub(t0)
			q.Status, q.ID, q.Cause = r.status, r.requestID, r.cause
			if r.err != nil {
				q.Err = r.err.Error()
			}
		}()
	}
	wg.Wait()
	return reqs[:dispatched], int(top.Load())
}
