package experiment

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// prober sends a health probe every interval, each on a connection of its
// own and without waiting for the previous one, as a load balancer does: a
// probe stuck behind a blocked loop does not delay the next.
type prober struct {
	ep      endpoint
	path    string
	t0      time.Time
	timeout time.Duration
	onProbe func(Probe) // called as each probe ends, from its goroutine; may be nil

	stop     chan struct{}
	ticking  chan struct{} // closed once the ticking goroutine returned
	inFlight sync.WaitGroup

	mu     sync.Mutex
	probes []Probe
}

// startProber probes at once, then every interval, until Stop or the end of
// ctx. Times are offsets from t0.
func startProber(ctx context.Context, ep endpoint, path string, interval, timeout time.Duration, t0 time.Time, onProbe func(Probe)) *prober {
	p := &prober{ep: ep, path: path, t0: t0, timeout: timeout, onProbe: onProbe,
		stop: make(chan struct{}), ticking: make(chan struct{})}
	go func() {
		defer close(p.ticking)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			p.probe(ctx)
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *prober) probe(ctx context.Context) {
	p.inFlight.Add(1)
	go func() {
		defer p.inFlight.Done()
		sent := time.Since(p.t0)
		pr := toProbe(sent, p.ep.get(ctx, p.path, p.t0.Add(sent+p.timeout)), p.t0)
		p.mu.Lock()
		p.probes = append(p.probes, pr)
		p.mu.Unlock()
		if p.onProbe != nil {
			p.onProbe(pr)
		}
	}()
}

// Stop ends the probing and waits for the probes in flight — the
// interesting ones: a blocked loop answers them last — then returns every
// probe by send time.
func (p *prober) Stop() []Probe {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.ticking
	p.inFlight.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	sortProbes(p.probes)
	return p.probes
}

func toProbe(sent time.Duration, r response, t0 time.Time) Probe {
	pr := Probe{Sent: sent, Latency: r.done.Sub(t0) - sent, Status: r.status, Cause: r.cause}
	if r.err != nil {
		pr.Err = r.err.Error()
	}
	return pr
}

// The liveness probe of a Kubernetes pod, as commonly configured for a web
// server: an HTTP GET every period, failed when it is not answered with
// 2xx or 3xx within the timeout; failureThreshold failures in a row and the
// kubelet restarts the container — here, the whole worker set.
const (
	LivenessPeriod           = time.Second
	LivenessTimeout          = time.Second
	LivenessFailureThreshold = 3
)

// liveness runs the liveness probe: one probe at a time, every period, as
// the kubelet does.
type liveness struct {
	stop   chan struct{}
	done   chan struct{}
	probes []Probe // owned by the probing goroutine until done
}

func startLiveness(ctx context.Context, ep endpoint, path string, t0 time.Time) *liveness {
	l := &liveness{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(LivenessPeriod)
		defer tick.Stop()
		for {
			sent := time.Since(t0)
			l.probes = append(l.probes, toProbe(sent, ep.get(ctx, path, t0.Add(sent+LivenessTimeout)), t0))
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

// Stop ends the probing once the probe in flight, if any, ended.
func (l *liveness) Stop() []Probe {
	close(l.stop)
	<-l.done
	return l.probes
}

// LivenessOK reports whether p passed as a liveness probe.
func LivenessOK(p Probe) bool {
	return p.Err == "" && p.Status >= 200 && p.Status < 400 && p.Latency <= LivenessTimeout
}

// LivenessRestarts counts how many times the liveness probe would have
// restarted the worker set: each LivenessFailureThreshold failures in a row
// is one restart, after which the count starts over, as it does for a
// restarted container.
func LivenessRestarts(ps []Probe) int {
	restarts, run := 0, 0
	for _, p := range ps {
		if LivenessOK(p) {
			run = 0
			continue
		}
		if run++; run == LivenessFailureThreshold {
			restarts++
			run = 0
		}
	}
	return restarts
}

// Health checks refused this long in a row, and at least this many, mean
// the server is gone, not slow: the run stops instead of measuring
// refusals. A blocked server does not refuse; it answers late.
const (
	downAfter  = 2 * time.Second
	downProbes = 3
)

// downWatch notices a server that stopped answering: health probes refused
// (or otherwise unable to connect) for downAfter with no answer since.
type downWatch struct {
	onDown func(first Probe, lastAnswer time.Duration)

	mu         sync.Mutex
	lastAnswer time.Duration // send time of the latest probe answered; -1 for none
	streak     []Probe       // refused since then
	fired      bool
}

func newDownWatch(onDown func(first Probe, lastAnswer time.Duration)) *downWatch {
	return &downWatch{onDown: onDown, lastAnswer: -1}
}

func (w *downWatch) see(p Probe) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.fired:
		return
	case p.Cause == CauseRefused || p.Cause == CauseConnect:
		if p.Sent > w.lastAnswer {
			w.streak = append(w.streak, p)
		}
	case p.Status != 0:
		if p.Sent > w.lastAnswer {
			w.lastAnswer = p.Sent
			w.streak = slices.DeleteFunc(w.streak, func(q Probe) bool { return q.Sent < p.Sent })
		}
		return
	default:
		return // slow or reset: a server in trouble, but there
	}
	if len(w.streak) < downProbes {
		return
	}
	first := slices.MinFunc(w.streak, func(a, b Probe) int { return cmp.Compare(a.Sent, b.Sent) })
	if p.Sent-first.Sent >= downAfter {
		w.fired = true
		w.onDown(first, w.lastAnswer)
	}
}
