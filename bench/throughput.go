package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

// measurement is one server under one load.
type measurement struct {
	scenario string // "keep-alive", "pipelined ×16"
	server   string
	kind     string // "demo", "baseline", "uvicorn"
	load     loadResult
	cpu      time.Duration         // the server's CPU time during the load
	window   time.Duration         // wall time the CPU was read over
	perPid   map[int]time.Duration // CPU per process (demo: master and workers)
	pids     []int                 // demo's workers, in pid order
	conns    map[int]int           // client connections per demo worker, sampled mid-run
	connErr  error
	runs     int           // measurements this row stands for
	allConns []map[int]int // conns of every run
	fig      figures       // what the table shows
	reps     []figures     // each run's own, in repeat order: for paired ratios
}

// figures are what the table shows for a row: one run's, or each the median
// over repeated runs, so one noisy run moves no column.
type figures struct {
	rate, cpuPct, perCPU float64
	p50, p99             time.Duration
	hasLat               bool // wrk with pipelining may record no latency
}

func (m *measurement) ownFigures() figures {
	return figures{
		rate: m.load.rate(), cpuPct: m.cpuPercent(), perCPU: m.perCPUSecond(),
		p50: m.load.lat.quantile(0.5), p99: m.load.lat.quantile(0.99), hasLat: m.load.lat.n > 0,
	}
}

const keepAlive = "keep-alive"

func (r *runner) pipelinedLabel() string { return "pipelined ×" + strconv.Itoa(r.cfg.Pipeline) }

// cpuPercent is the server's CPU use during the load, 100% being one core.
func (m *measurement) cpuPercent() float64 {
	if m.window <= 0 {
		return 0
	}
	return 100 * m.cpu.Seconds() / m.window.Seconds()
}

// perCPUSecond is requests per server CPU-second: the figure that survives
// a shared machine, since the load generator's share of it varies.
func (m *measurement) perCPUSecond() float64 {
	if m.cpu <= 0 {
		return 0
	}
	return float64(m.load.requests) / m.cpu.Seconds()
}

// target is one server and the loads it gets.
type target struct {
	name      string
	start     func(context.Context) (*server, error)
	keepAlive bool
	pipelined bool
	newConns  bool // scaling: also a steady arrival of new connections
	optional  bool // a failure is noted and the run goes on
}

// Row names of demo's configurations.
const (
	demoOne = "demo async ×1" // --no-access-log, detector on: the configuration the keep-alive targets name
	// demoNetHTTP is demoOne parsing every request with net/http's
	// ReadRequest, the reference its own parser is fuzzed against.
	demoNetHTTP = "demo async ×1 net/http parser"
)

// socketSetup is one way --workers 2 shares the port.
type socketSetup struct {
	label  string // for the report: "shared socket"
	short  string // for the targets: "shared"
	server string // its row's name
	flags  []string
}

// socketSetups are the ways demo serve can share a port between workers.
// EPOLLEXCLUSIVE is measured only when this demo serve offers it.
func socketSetups(exclusive bool) []socketSetup {
	ss := []socketSetup{{label: "shared socket", short: "shared", server: "demo async ×2 shared"}}
	if exclusive {
		ss = append(ss, socketSetup{label: "shared + EPOLLEXCLUSIVE", short: "exclusive", server: "demo async ×2 exclusive", flags: []string{"--epoll-exclusive"}})
	}
	return append(ss, socketSetup{label: "SO_REUSEPORT per worker", short: "reuse-port", server: "demo async ×2 reuse-port", flags: []string{"--reuse-port"}})
}

func (r *runner) runThroughput(ctx context.Context) error {
	c := &r.cfg
	keep := c.has(Throughput) || c.has(Scaling) || c.has(Costs)
	demo := func(name string, workers int, flags ...string) func(context.Context) (*server, error) {
		args := append([]string{"--workers", strconv.Itoa(workers), "--mode", "async"}, flags...)
		return func(ctx context.Context) (*server, error) { return r.startDemo(ctx, name, args...) }
	}
	targets := []target{
		{name: "net/http GOMAXPROCS=1", start: func(ctx context.Context) (*server, error) { return startBaseline(ctx, c.Bin) },
			keepAlive: keep, pipelined: c.has(Pipelined)},
		{name: demoOne, start: demo(demoOne, 1, "--no-access-log"), keepAlive: keep, pipelined: c.has(Pipelined)},
	}
	if c.has(Costs) {
		// The parser's cost beside net/http's; the access log's and the
		// detector's are the costs rounds' (costs.go).
		if serveAccepts(ctx, c.Bin, "--http-parser=net/http") {
			targets = append(targets, target{name: demoNetHTTP, start: demo(demoNetHTTP, 1, "--no-access-log", "--http-parser", "net/http"),
				keepAlive: true, pipelined: c.has(Pipelined)})
		} else {
			r.notes = append(r.notes, "costs: the net/http parser row skipped: this demo serve has no --http-parser")
		}
	}
	peers, err := r.peerTargets(ctx)
	if err != nil {
		return err
	}
	targets = append(targets, peers...)
	if c.has(Scaling) {
		exclusive := serveHasFlag(ctx, c.Bin, "--epoll-exclusive")
		if !exclusive {
			r.notes = append(r.notes, "scaling: shared socket + EPOLLEXCLUSIVE skipped: this demo serve has no --epoll-exclusive")
		}
		r.setups = socketSetups(exclusive)
		for _, ss := range r.setups {
			flags := append([]string{"--no-access-log"}, ss.flags...)
			targets = append(targets, target{name: ss.server, start: demo(ss.server, 2, flags...), keepAlive: true, newConns: c.NewConns > 0})
		}
	}
	return r.measureTargets(ctx, targets)
}

// serveHasFlag reports whether `demo serve --help` lists flag.
func serveHasFlag(ctx context.Context, bin, flag string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "--help").CombinedOutput()
	if err != nil {
		return false
	}
	return regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(flag) + `\b`).Match(out)
}

// serveAccepts reports whether `demo serve` takes flag (hidden flags
// included, which --help does not list).
func serveAccepts(ctx context.Context, bin, flag string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, bin, "serve", flag, "--help").Run() == nil
}

// load is one load a target gets.
type load struct {
	label    string
	pipeline int
}

func (r *runner) loadsOf(t target) []load {
	var ls []load
	if t.keepAlive {
		ls = append(ls, load{keepAlive, 1})
	}
	if t.pipelined {
		ls = append(ls, load{r.pipelinedLabel(), r.cfg.Pipeline})
	}
	return ls
}

// measureTargets starts every target (idle servers cost nothing), then
// measures them in turn, cfg.Repeat times over, so that a slow spell of the
// shared machine hits every server alike; each row is the median by
// requests per CPU-second. Rows come keep-alive first, in target order.
func (r *runner) measureTargets(ctx context.Context, targets []target) (err error) {
	var up []*server
	var upTargets []target
	defer func() {
		for i, s := range up {
			if stopErr := s.stop(); stopErr != nil && !upTargets[i].optional {
				err = errors.Join(err, fmt.Errorf("stop %s: %w", s.name, stopErr))
			}
		}
	}()
	for _, t := range targets {
		r.log("starting %s", t.name)
		s, err := t.start(ctx)
		switch {
		case err == nil:
			up, upTargets = append(up, s), append(upTargets, t)
		case t.optional && ctx.Err() == nil:
			// A peer is a guest: its trouble is reported, and the run goes on.
			r.missPeer(t.name, "did not start: "+err.Error())
		default:
			return fmt.Errorf("start %s: %w", t.name, err)
		}
	}
	for _, s := range up {
		// What each sends back differs by a header or two: say how much.
		if n, err := responseBytes(ctx, s.url); err == nil {
			r.wireBytes[s.name] = n
		}
	}
	type key struct {
		target int
		label  string
	}
	runs := map[key][]measurement{}
	failed := map[int]bool{}
	for rep := 1; rep <= r.cfg.Repeat; rep++ {
		for i, s := range up {
			for _, l := range r.loadsOf(upTargets[i]) {
				if failed[i] {
					continue
				}
				m, err := r.measure(ctx, s, l.label, l.pipeline)
				if err != nil {
					if upTargets[i].optional && ctx.Err() == nil {
						r.missPeer(s.name, fmt.Sprintf("failed under %s load: %v", l.label, err))
						failed[i] = true
						continue
					}
					return fmt.Errorf("%s, %s: %w", s.name, l.label, err)
				}
				runs[key{i, l.label}] = append(runs[key{i, l.label}], m)
				r.log("%-14s %-28s %9.0f req/s  CPU %3.0f%%  %9.0f req/CPU-s  p99 %v  non-2xx %d  errors %d",
					l.label, s.name, m.load.rate(), m.cpuPercent(), m.perCPUSecond(),
					m.load.lat.quantile(0.99).Round(time.Microsecond), m.load.non2xx, m.load.errors)
			}
			if upTargets[i].newConns && !failed[i] {
				sr, err := r.measureSpread(ctx, s)
				if err != nil {
					return fmt.Errorf("%s, new connections: %w", s.name, err)
				}
				if r.spreads == nil {
					r.spreads = map[string][]spreadRun{}
				}
				r.spreads[s.name] = append(r.spreads[s.name], sr)
			}
		}
	}
	for _, label := range []string{keepAlive, r.pipelinedLabel()} {
		for i := range up {
			if ms := runs[key{i, label}]; len(ms) > 0 {
				r.rows = append(r.rows, medianRun(ms))
			}
		}
	}
	return nil
}

// medianRun summarises repeated runs: each figure is its median, the
// run with the median requests per CPU-second supplies the per-process
// details, and errors and non-2xx responses of every run are added up so
// none is hidden.
func medianRun(ms []measurement) measurement {
	sorted := slices.Clone(ms)
	slices.SortFunc(sorted, func(a, b measurement) int { return cmp.Compare(a.perCPUSecond(), b.perCPUSecond()) })
	m := sorted[len(sorted)/2]
	m.load.errors, m.load.non2xx = 0, 0
	m.allConns = nil
	figs := make([]figures, len(ms))
	for i, o := range ms {
		figs[i] = o.ownFigures()
		m.reps = append(m.reps, figs[i])
		m.load.errors += o.load.errors
		m.load.non2xx += o.load.non2xx
		if m.load.firstErr == "" {
			m.load.firstErr = o.load.firstErr
		}
		if o.conns != nil {
			m.allConns = append(m.allConns, o.conns)
		}
	}
	// Latencies are the median of the runs that recorded any: wrk with
	// pipelining sometimes records none, and its zeros are no figure.
	withLat := slices.DeleteFunc(slices.Clone(figs), func(f figures) bool { return !f.hasLat })
	med := func(figs []figures, f func(figures) float64) float64 {
		if len(figs) == 0 {
			return 0
		}
		vs := make([]float64, len(figs))
		for i, fg := range figs {
			vs[i] = f(fg)
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	m.fig = figures{
		rate:   med(figs, func(f figures) float64 { return f.rate }),
		cpuPct: med(figs, func(f figures) float64 { return f.cpuPct }),
		perCPU: med(figs, func(f figures) float64 { return f.perCPU }),
		p50:    time.Duration(med(withLat, func(f figures) float64 { return float64(f.p50) })),
		p99:    time.Duration(med(withLat, func(f figures) float64 { return float64(f.p99) })),
		hasLat: len(withLat) > 0,
	}
	return m
}

// ratio compares a with b in one figure. Runs of the same repeat round ran
// within seconds of each other, while the shared machine's speed drifts by
// ±25 % from one round to the next: so it is the median of the rounds' own
// ratios, not the ratio of two medians drawn from different rounds.
func ratio(a, b *measurement, f func(figures) float64) float64 {
	if len(a.reps) == 0 || len(a.reps) != len(b.reps) {
		if f(b.fig) == 0 {
			return 0
		}
		return f(a.fig) / f(b.fig)
	}
	var rs []float64
	for i := range a.reps {
		if base := f(b.reps[i]); base != 0 {
			rs = append(rs, f(a.reps[i])/base)
		}
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if n := len(rs); n%2 == 0 {
		return (rs[n/2-1] + rs[n/2]) / 2
	}
	return rs[len(rs)/2]
}

func perCPU(f figures) float64 { return f.perCPU }

// measure warms s up, then loads it for the configured duration while
// reading its CPU time, and for demo the spread of connections over its
// workers.
func (r *runner) measure(ctx context.Context, s *server, label string, pipeline int) (measurement, error) {
	lc := loadConfig{url: s.url + "/healthcheck", connections: r.cfg.Connections, duration: r.cfg.Duration, pipeline: pipeline}
	if r.cfg.Warmup > 0 {
		warm := lc
		warm.duration = r.cfg.Warmup
		if _, err := r.load(ctx, warm); err != nil {
			return measurement{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	m := measurement{scenario: label, server: s.name, kind: s.kind, pids: s.workers()}
	pids := s.pids()

	// Half-way through, every connection is open: see which worker holds it.
	sampleCtx, stopSample := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if len(m.pids) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sleepCtx(sampleCtx, r.cfg.Duration/2) {
				m.conns, m.connErr = connShare(s.port, m.pids)
			}
		}()
	}
	before := snapCPU(pids)
	t0 := time.Now()
	res, err := r.load(ctx, lc)
	m.window = time.Since(t0)
	m.cpu, m.perPid = snapCPU(pids).since(before)
	stopSample()
	wg.Wait()
	if err != nil {
		return measurement{}, err
	}
	if res.requests == 0 {
		return measurement{}, fmt.Errorf("no request was answered: %s%s", res.firstErr, s.lastLines())
	}
	m.load = res
	m.fig = m.ownFigures()
	return m, nil
}
