package experiment

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary is one scenario reduced to the numbers and words the renderers
// show.
type Summary struct {
	Scenario     Scenario
	Wall         time.Duration
	Requests     Stats // latency of the requests that got a 200
	Health       Stats // latency of the probes that got a 200
	Probes       int
	LateProbes   int // slower than Settings.LateAfter, or failed
	Failed       int // requests without a 200
	Stalled      time.Duration
	Stalls       int
	Model        ModelCheck
	Words        string
	PerWorker    []int // requests started per worker; [0] is unknown
	FailedProbes int
	// Verdict judges a --target burst's route; Words is then its words.
	Verdict Verdict
}

// Summarize reduces r.
func Summarize(r Result, st Settings) Summary {
	if !r.Scenario.local() {
		v := Judge(r, st)
		return Summary{
			Scenario: r.Scenario, Wall: r.Wall,
			Requests: r.RequestStats(), Health: r.HealthStats(),
			Probes: len(r.Probes), LateProbes: r.LateProbes(v.LateAfter),
			Failed: r.Failed(), FailedProbes: r.FailedProbes(),
			Words: v.Words, Verdict: v,
		}
	}
	return Summary{
		Scenario:     r.Scenario,
		Wall:         r.Wall,
		Requests:     r.RequestStats(),
		Health:       r.HealthStats(),
		Probes:       len(r.Probes),
		LateProbes:   r.LateProbes(st.LateAfter()),
		Failed:       r.Failed(),
		FailedProbes: r.FailedProbes(),
		Stalled:      r.Stalled(),
		Stalls:       len(r.Stalls),
		Model:        modelOf(r, st),
		Words:        Describe(r, st),
		PerWorker:    r.PerWorker(),
	}
}

// modelOf is CheckModel's verdict on r, or none when it does not apply
// (Settings.ModelSkipped).
func modelOf(r Result, st Settings) ModelCheck {
	if st.ModelSkipped() != "" {
		return ModelCheck{}
	}
	return CheckModel(r, st)
}

// lateAfter is when a health probe of the scenario counted as late: the
// verdict's threshold against a --target, the settings' otherwise.
func (s Summary) lateAfter(st Settings) time.Duration {
	if s.Verdict.LateAfter > 0 {
		return s.Verdict.LateAfter
	}
	return st.LateAfter()
}

// Summaries summarises every result of the report, in order.
func (rep *Report) Summaries() []Summary {
	out := make([]Summary, len(rep.Results))
	for i, r := range rep.Results {
		out[i] = Summarize(r, rep.Settings)
	}
	return out
}

// Describe says in plain words what happened in r: whether the requests
// overlapped or queued, on which workers, and how health checks fared, e.g.
// "requests ran one after the other; health checks waited up to 4.0 s".
func Describe(r Result, st Settings) string {
	parts := []string{requestWords(r, st), healthWords(r, st)}
	if n := r.Failed(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d requests failed", n, len(r.Requests)))
	}
	return strings.Join(parts, "; ")
}

func requestWords(r Result, st Settings) string {
	var ivs []interval
	for _, q := range r.Requests {
		if !q.OK() {
			continue
		}
		start := q.Sent
		if q.HasStart {
			start = q.Started
		}
		ivs = append(ivs, interval{start, q.Finished})
	}
	n := len(ivs)
	switch n {
	case 0:
		return "no request succeeded"
	case 1:
		return "the single request took " + fmtWords(r.Requests[0].Latency())
	}
	// Processing intervals touch when a loop hands over from one request to
	// the next, and logs and clients see that instant a little apart: only
	// an overlap longer than half an external call counts.
	peak := peakOverlap(ivs, st.Delay/2)
	var overlap string
	switch {
	case peak == n && n == 2:
		overlap = "both requests overlapped"
	case peak == n:
		overlap = fmt.Sprintf("all %d requests overlapped", n)
	case peak <= 1:
		overlap = "requests ran one after the other"
	default:
		overlap = fmt.Sprintf("requests partly overlapped, at most %d at a time", peak)
	}

	s := r.Scenario
	counts := r.PerWorker()
	if s.Workers < 2 || counts[0] > 0 {
		return overlap
	}
	var busy, idle []int
	for w := 1; w <= s.Workers; w++ {
		if counts[w] > 0 {
			busy = append(busy, w)
		} else {
			idle = append(idle, w)
		}
	}
	if len(busy) == 1 {
		grabbed := fmt.Sprintf("worker %d accepted %s connections", busy[0], allOf(len(r.Requests)))
		if s.Mode == Mixed && peak <= 1 {
			return fmt.Sprintf("%s and ran them one after the other while %s idled — more workers only hide the problem",
				grabbed, workerList(idle))
		}
		return fmt.Sprintf("%s while %s idled; %s", grabbed, workerList(idle), overlap)
	}
	if s.Mode == Mixed {
		return fmt.Sprintf("%s, spread over %s — more workers only hide the problem: each loop stalled for every request it took",
			overlap, workerList(busy))
	}
	return fmt.Sprintf("%s, spread over %s", overlap, workerList(busy))
}

func healthWords(r Result, st Settings) string {
	if len(r.Probes) == 0 {
		return "no health check was sent"
	}
	// Failed probes are reported apart; slow ones are those answered late.
	var answered, onTime []time.Duration
	for _, p := range r.Probes {
		if p.OK() {
			answered = append(answered, p.Latency)
			if p.Latency <= st.LateAfter() {
				onTime = append(onTime, p.Latency)
			}
		}
	}
	var s string
	switch slow := len(answered) - len(onTime); {
	case len(answered) == 0:
		return "no health check got an answer"
	case slow == 0:
		s = "health checks answered within " + fmtWords(slices.Max(answered))
	case 2*slow > len(answered):
		s = "health checks waited up to " + fmtWords(slices.Max(answered))
	default:
		// A few unlucky probes (accepted by a blocked worker along with the
		// requests) must not hide that the rest were fine.
		s = fmt.Sprintf("%d of %d health checks waited up to %s, the others answered within %s",
			slow, len(answered), fmtWords(slices.Max(answered)), fmtWords(slices.Max(onTime)))
	}
	if failed := len(r.Probes) - len(answered); failed > 0 {
		s += fmt.Sprintf(" (%d failed)", failed)
	}
	return s
}

// allOf is "both" for two and "all N" otherwise.
func allOf(n int) string {
	if n == 2 {
		return "both"
	}
	return "all " + strconv.Itoa(n)
}

// workerList names workers: "worker 2", "workers 2 and 3", "workers 2, 3 and 4".
func workerList(ws []int) string {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = strconv.Itoa(w)
	}
	switch len(names) {
	case 0:
		return "no worker"
	case 1:
		return "worker " + names[0]
	}
	return "workers " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

type interval struct{ start, end time.Duration }

// peakOverlap is the largest number of intervals that run at the same time,
// each first shrunk by tol/2 at both ends so that mere contact does not
// count.
func peakOverlap(ivs []interval, tol time.Duration) int {
	type edge struct {
		at    time.Duration
		delta int
	}
	var edges []edge
	for _, iv := range ivs {
		s, e := iv.start+tol/2, iv.end-tol/2
		if e <= s {
			// Too short to overlap anything meaningfully, but it still ran.
			s, e = iv.start, iv.start
		}
		edges = append(edges, edge{s, +1}, edge{e, -1})
	}
	// At equal times ends come first: touching intervals are sequential.
	slices.SortFunc(edges, func(a, b edge) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta))
	})
	cur, peak := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	return max(peak, 1)
}

// fmtWords renders d for sentences: "3 ms", "4.0 s".
func fmtWords(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", ceilMillis(d))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// fmtTable renders d for tables: "3 ms", "4.02 s".
func fmtTable(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", ceilMillis(d))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// ceilMillis rounds up so that a fast answer reads "within 1 ms", not 0.
func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
