package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// The costs scenario: the CPU time per request the access log and the
// blocked-loop detector cost as users run them (demo serve's defaults),
// against the same server with both off.
//
// The figure is a few per cent, and this machine is shared: another job's
// burst moves one server's CPU per request by 20 % or more for a second or
// two, so one long measurement per server, or three, compares noise. So
// the servers are visited in turn, for a short round each, many times over
// (the order reversed every other round, so that neither side of a pair
// always comes first); each round gives a ratio of two measurements made
// seconds apart, and the figure is the median of those ratios, with the
// interval within which that median itself is known. CPU time is read from
// each process's CPU clock (nanoseconds) rather than /proc's ticks, which
// would be a 1 % step in a one-second round.

// costSettle is how long after a round's load the server's CPU is read:
// demo's worker and nginx hold access lines for up to 50 ms before they
// write them, and that write belongs to the round.
const costSettle = 80 * time.Millisecond

// Row names of the costs scenario (demoOne is the third).
const (
	demoAllOn  = "demo async ×1 all on"  // access log + detector: demo serve's defaults
	demoAllOff = "demo async ×1 all off" // --no-access-log --slow-callback 0
)

// costServer is one configuration the rounds visit.
type costServer struct {
	name  string
	start func(context.Context) (*server, error)
	peer  bool // nginx: a guest, whose failure is noted while the rounds go on
}

// costResult is what the rounds measured.
type costResult struct {
	names  []string             // in visit order, those that took part in every round
	perReq map[string][]float64 // server CPU nanoseconds per request, one per round
	rate   map[string][]float64 // requests a second, one per round
	rounds int
	round  time.Duration
}

// costPair is one comparison the report makes: what `on` costs over `off`.
type costPair struct {
	label   string
	on, off string
}

// costPairs are the comparisons, the first the target's.
var costPairs = []costPair{
	{"everything on vs everything off", demoAllOn, demoAllOff},
	{"access log alone (all on vs " + demoOne + ")", demoAllOn, demoOne},
	{"detector alone (" + demoOne + " vs all off)", demoOne, demoAllOff},
	{"nginx's access log, for comparison", nginxLogOnName, nginxName},
}

func (r *runner) runCosts(ctx context.Context) (err error) {
	demo := func(name string, flags ...string) func(context.Context) (*server, error) {
		args := append([]string{"--workers", "1", "--mode", "async"}, flags...)
		return func(ctx context.Context) (*server, error) { return r.startDemo(ctx, name, args...) }
	}
	servers := []costServer{
		{name: demoAllOn, start: demo(demoAllOn)},
		{name: demoAllOff, start: demo(demoAllOff, "--no-access-log", "--slow-callback", "0")},
		{name: demoOne, start: demo(demoOne, "--no-access-log")},
	}
	if n, ok := r.findNginx(ctx); ok {
		start := func(name string, accessLog bool) func(context.Context) (*server, error) {
			return func(ctx context.Context) (*server, error) {
				return startNginx(ctx, n, r.scratch, name, r.cfg.Connections, accessLog)
			}
		}
		servers = append(servers,
			costServer{name: nginxLogOnName, start: start(nginxLogOnName, true), peer: true},
			costServer{name: nginxName, start: start(nginxName, false), peer: true})
	}
	// The peers with a keep-alive target are visited too: their ratio to
	// demo from these rounds is known far more closely than from the
	// throughput scenario's few long loads minutes apart (peers_report.go).
	if bin, ok, err := r.findFasthttp(ctx); err != nil {
		return err
	} else if ok {
		servers = append(servers, costServer{name: fasthttpName, peer: true,
			start: func(ctx context.Context) (*server, error) { return r.startFasthttp(ctx, bin) }})
	}

	var up []*server
	var upPeer []bool
	defer func() {
		for i, s := range up {
			if stopErr := s.stop(); stopErr != nil && !upPeer[i] {
				err = errors.Join(err, fmt.Errorf("stop %s: %w", s.name, stopErr))
			}
		}
	}()
	for _, cs := range servers {
		r.log("costs: starting %s", cs.name)
		s, err := cs.start(ctx)
		switch {
		case err == nil:
			up, upPeer = append(up, s), append(upPeer, cs.peer)
		case cs.peer && ctx.Err() == nil:
			r.costNote(cs.name, "did not start: "+err.Error())
		default:
			return fmt.Errorf("costs: start %s: %w", cs.name, err)
		}
	}

	res := &costResult{perReq: map[string][]float64{}, rate: map[string][]float64{}, rounds: r.cfg.CostRounds, round: r.cfg.CostRound}
	for _, s := range up {
		res.names = append(res.names, s.name)
	}
	failed := make([]bool, len(up))
	load := loadConfig{connections: r.cfg.Connections, duration: r.cfg.CostRound, pipeline: 1}
	if r.cfg.Warmup > 0 {
		for i, s := range up {
			warm := load
			warm.url, warm.duration = s.url+"/healthcheck", r.cfg.Warmup
			if _, err := r.load(ctx, warm); err != nil {
				if !upPeer[i] || ctx.Err() != nil {
					return fmt.Errorf("costs: %s, warm-up: %w", s.name, err)
				}
				r.costNote(s.name, "failed under load: "+err.Error())
				failed[i] = true
			}
		}
	}
	for round := range r.cfg.CostRounds {
		order := make([]int, len(up))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			if failed[i] {
				continue
			}
			s := up[i]
			lc := load
			lc.url = s.url + "/healthcheck"
			perReq, rate, err := r.costVisit(ctx, s, lc)
			if err != nil {
				if !upPeer[i] || ctx.Err() != nil {
					return fmt.Errorf("costs: %s, round %d: %w", s.name, round+1, err)
				}
				r.costNote(s.name, "failed under load: "+err.Error())
				failed[i] = true
				continue
			}
			res.perReq[s.name] = append(res.perReq[s.name], perReq)
			res.rate[s.name] = append(res.rate[s.name], rate)
		}
		r.log("costs: round %d of %d: %s", round+1, r.cfg.CostRounds, res.roundLine(round))
	}
	res.names = slices.DeleteFunc(res.names, func(name string) bool {
		i := slices.IndexFunc(up, func(s *server) bool { return s.name == name })
		return failed[i]
	})
	r.costs = res
	return nil
}

// costVisitTries is how many times a visit is made before a server that
// answered nothing in it fails: on a busy machine wrk can spend a whole
// one-second round connecting, and report no request and no error.
const costVisitTries = 3

// costVisit loads s for one round and returns the server's CPU time per
// request, in nanoseconds, and its requests a second.
func (r *runner) costVisit(ctx context.Context, s *server, lc loadConfig) (perReq, rate float64, err error) {
	for try := 1; ; try++ {
		perReq, rate, err = r.costVisitOnce(ctx, s, lc)
		if !errors.Is(err, errNoneAnswered) || try == costVisitTries || ctx.Err() != nil {
			return perReq, rate, err
		}
		r.log("costs: %s answered nothing in its %s visit (try %d of %d): visiting again", s.name, lc.duration, try, costVisitTries)
	}
}

// errNoneAnswered: a load answered no request and saw no error.
var errNoneAnswered = errors.New("no request was answered")

// costVisitOnce is one visit of costVisit.
func (r *runner) costVisitOnce(ctx context.Context, s *server, lc loadConfig) (perReq, rate float64, err error) {
	pids := s.pids()
	before, err := cpuClocks(pids)
	if err != nil {
		return 0, 0, err
	}
	res, err := r.load(ctx, lc)
	if err != nil {
		return 0, 0, err
	}
	if !sleepCtx(ctx, costSettle) {
		return 0, 0, ctx.Err()
	}
	after, err := cpuClocks(pids)
	if err != nil {
		return 0, 0, err
	}
	if res.requests == 0 {
		return 0, 0, fmt.Errorf("%w: %s%s", errNoneAnswered, res.firstErr, s.lastLines())
	}
	if res.non2xx+res.errors > 0 {
		return 0, 0, fmt.Errorf("%d non-2xx answers and %d errors (first: %s)", res.non2xx, res.errors, res.firstErr)
	}
	return float64(after-before) / float64(res.requests), res.rate(), nil
}

// costNote records why a peer took no part in the costs rounds.
func (r *runner) costNote(name, why string) {
	r.notes = append(r.notes, fmt.Sprintf("costs: %s left out: %s", name, summary(why)))
}

// roundLine is one round's CPU per request of each server, for the log.
func (c *costResult) roundLine(round int) string {
	var b []byte
	for _, name := range c.names {
		if vs := c.perReq[name]; round < len(vs) {
			if len(b) > 0 {
				b = append(b, ", "...)
			}
			b = append(b, name...)
			b = append(b, ' ')
			b = strconv.AppendFloat(b, vs[round]/1e3, 'f', 2, 64)
			b = append(b, " µs/req"...)
		}
	}
	return string(b)
}

// has reports whether name took part in every round.
func (c *costResult) has(name string) bool { return slices.Contains(c.names, name) }

// ratio is a's requests per CPU-second over b's, round by round: b's CPU
// per request ÷ a's.
func (c *costResult) ratio(a, b string) (medianCI, bool) {
	return c.perRound(a, b, func(pa, pb float64) float64 { return pb / pa })
}

// cost is what on costs over off: in each round, the share of requests per
// CPU-second lost, 1 − (off's CPU per request ÷ on's).
func (c *costResult) cost(p costPair) (medianCI, bool) {
	return c.perRound(p.on, p.off, func(on, off float64) float64 { return 1 - off/on })
}

// perRound is f of a's and b's CPU per request in each round both took
// part in, summarised; false when there is none.
func (c *costResult) perRound(a, b string, f func(pa, pb float64) float64) (medianCI, bool) {
	if !c.has(a) || !c.has(b) {
		return medianCI{}, false
	}
	xa, xb := c.perReq[a], c.perReq[b]
	xs := make([]float64, 0, len(xa))
	for i := range min(len(xa), len(xb)) {
		if xa[i] > 0 {
			xs = append(xs, f(xa[i], xb[i]))
		}
	}
	if len(xs) == 0 {
		return medianCI{}, false
	}
	return newMedianCI(xs), true
}
