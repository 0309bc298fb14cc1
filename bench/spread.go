package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"demo/control"
)

// spreadRun is how the workers of one demo serve shared a steady arrival of
// new connections, each carrying one request.
type spreadRun struct {
	arrivals  arrivalResult
	perWorker map[int]uint64 // requests each worker (by pid) counted during the phase
	pids      []int          // the workers, in pid order
	counted   uint64         // their sum
}

// largest is the biggest worker's share of the requests counted.
func (s *spreadRun) largest() float64 {
	var top uint64
	for _, n := range s.perWorker {
		top = max(top, n)
	}
	if s.counted == 0 {
		return 0
	}
	return float64(top) / float64(s.counted)
}

// arrivalResult is what a steady arrival of new connections measured.
type arrivalResult struct {
	tally
	sent int
	took time.Duration // first connect to last answer
	end  time.Time     // of the last answer
	lat  histogram     // connect + request + answer
}

// settleSlack is how much later than the master's refresh interval its
// per-worker counts are trusted to include the last request: a report may
// be on its way meanwhile.
const settleSlack = 250 * time.Millisecond

// measureSpread sends cfg.NewConns requests, each on a connection of its
// own, arriving steadily over cfg.NewConnsOver, and attributes each to the
// worker that answered it by the workers' request counters (the master's
// control socket, as `demo status --json` shows them), read before and
// after. wrk, in contrast, opens all its connections in one burst at the
// start, which favours whichever worker wakes first.
func (r *runner) measureSpread(ctx context.Context, s *server) (spreadRun, error) {
	// The counts must include every request of the load before.
	_, refresh, err := workerCounts(ctx, s.control)
	if err != nil {
		return spreadRun{}, err
	}
	countSettle := refresh + settleSlack
	if !sleepCtx(ctx, countSettle) {
		return spreadRun{}, ctx.Err()
	}
	before, _, err := workerCounts(ctx, s.control)
	if err != nil {
		return spreadRun{}, err
	}
	if p := r.cfg.LoadProcs; p > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(p))
	}
	res := arrive(ctx, s.url+"/healthcheck", r.cfg.NewConns, r.cfg.NewConnsOver)
	if err := ctx.Err(); err != nil {
		return spreadRun{}, err
	}
	if res.ok == 0 {
		return spreadRun{}, fmt.Errorf("no request was answered: %s%s", res.firstErr, s.lastLines())
	}
	// Every answered request is counted once its worker's next heartbeat
	// is in; a late heartbeat (a busy machine) gets a few more chances.
	var run spreadRun
	for wait := countSettle; ; wait = countSettle / 3 {
		if !sleepCtx(ctx, wait) {
			return spreadRun{}, ctx.Err()
		}
		after, _, err := workerCounts(ctx, s.control)
		if err != nil {
			return spreadRun{}, err
		}
		run = spreadRun{arrivals: res, perWorker: map[int]uint64{}}
		for pid, n := range after {
			b, ok := before[pid]
			if !ok {
				return spreadRun{}, fmt.Errorf("worker %d appeared during the run: a worker was replaced", pid)
			}
			run.perWorker[pid] = n - b
			run.pids = append(run.pids, pid)
			run.counted += n - b
		}
		if run.counted >= uint64(res.ok+res.non2xx) {
			break
		}
		if time.Since(res.end) > 5*countSettle {
			return spreadRun{}, fmt.Errorf("the workers counted %d requests, %d were answered", run.counted, res.ok+res.non2xx)
		}
	}
	slices.Sort(run.pids)
	r.log("new connections %-24s %d answered in %v, per worker %s", s.name, res.ok, res.took.Round(time.Millisecond), run.split())
	return run, nil
}

// split is the per-worker counts, "1,480/1,520".
func (s *spreadRun) split() string {
	parts := make([]string, len(s.pids))
	for i, pid := range s.pids {
		parts[i] = fmtInt(int64(s.perWorker[pid]))
	}
	return strings.Join(parts, "/")
}

// workerCounts reads each worker's requests-served counter (by pid) from
// the master's control socket, and how often the workers refresh them.
func workerCounts(ctx context.Context, path string) (map[int]uint64, time.Duration, error) {
	if path == "" {
		return nil, 0, errors.New("no control socket")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	snap, err := control.Fetch(ctx, path)
	if err != nil {
		return nil, 0, err
	}
	if snap.Refresh <= 0 {
		return nil, 0, errors.New("the master's status does not say how often its counts refresh")
	}
	counts := map[int]uint64{}
	for _, w := range snap.Workers {
		counts[w.PID] = w.Requests
	}
	return counts, snap.Refresh, nil
}

// arrivalsInFlight bounds the connections open at once: a server that
// falls behind slows the arrivals down instead of facing a pile.
const arrivalsInFlight = 64

// arrive opens n connections to url at a steady pace over `over`, each
// sending one GET with `Connection: close` (so the server closes first and
// holds the TIME_WAIT, not the bench's ports) and reading the answer.
func arrive(ctx context.Context, url string, n int, over time.Duration) arrivalResult {
	var res arrivalResult
	u, err := checkTarget(url)
	if err != nil {
		res.errors, res.firstErr = n, err.Error()
		return res
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: demo-bench\r\nConnection: close\r\n\r\n")
	const timeout = 5 * time.Second
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		slot = make(chan struct{}, arrivalsInFlight)
	)
	one := func() {
		defer wg.Done()
		defer func() { <-slot }()
		start := time.Now()
		status, err := func() (int, error) {
			d := net.Dialer{Timeout: timeout}
			conn, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return 0, fmt.Errorf("connect: %w", err)
			}
			defer conn.Close()
			return roundTripOnce(conn, req, start.Add(timeout))
		}()
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if res.add(status, err) {
			res.lat.record(took)
		}
	}
	gap := over / time.Duration(max(1, n))
	start := time.Now()
	for i := range n {
		// Each arrival has its due time: a late one (a busy bench) is sent
		// at once, and the pace catches up instead of drifting.
		if wait := time.Until(start.Add(time.Duration(i) * gap)); wait > 0 && !sleepCtx(ctx, wait) {
			break
		}
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		res.sent++
		wg.Add(1)
		go one()
	}
	wg.Wait()
	res.end = time.Now()
	res.took = res.end.Sub(start)
	return res
}
