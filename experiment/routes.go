package experiment

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// RouteStats summarises the requests of one route (or of all of them) in
// an open-loop run.
type RouteStats struct {
	Route  string
	Sent   int // arrivals, sent or not
	OK     int // got a 200
	Causes []CauseCount
	// Latency percentiles of the requests that got a 200.
	P50, P90, P99, Max time.Duration
}

// CauseCount is how many requests failed for one cause.
type CauseCount struct {
	Cause string
	N     int
}

// Failed counts the route's failed requests.
func (s RouteStats) Failed() int { return s.Sent - s.OK }

// FailedWords: "0", "11 timeout", or "38 (30 timeout, 8 HTTP 503)".
func (s RouteStats) FailedWords() string {
	switch len(s.Causes) {
	case 0:
		return "0"
	case 1:
		return fmt.Sprintf("%d %s", s.Causes[0].N, s.Causes[0].Cause)
	}
	parts := make([]string, len(s.Causes))
	for i, c := range s.Causes {
		parts[i] = fmt.Sprintf("%d %s", c.N, c.Cause)
	}
	return fmt.Sprintf("%d (%s)", s.Failed(), strings.Join(parts, ", "))
}

func newRouteStats(route string, reqs []Request) RouteStats {
	s := RouteStats{Route: route, Sent: len(reqs)}
	var ds []time.Duration
	causes := map[string]int{}
	for _, q := range reqs {
		if q.OK() {
			s.OK++
			ds = append(ds, q.Latency())
			continue
		}
		c := q.Cause
		if c == "" {
			c = CauseBadResponse
		}
		causes[c]++
	}
	for c, n := range causes {
		s.Causes = append(s.Causes, CauseCount{c, n})
	}
	slices.SortFunc(s.Causes, func(a, b CauseCount) int { return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Cause, b.Cause)) })
	if len(ds) > 0 {
		slices.Sort(ds)
		s.P50, s.P90, s.P99, s.Max = sortedPercentile(ds, 50), sortedPercentile(ds, 90), sortedPercentile(ds, 99), ds[len(ds)-1]
	}
	return s
}

// sortedPercentile is Percentile on an already sorted slice.
func sortedPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// OpenSummary is one open-loop scenario reduced to the numbers the
// renderers show.
type OpenSummary struct {
	Scenario Scenario
	Routes   []RouteStats // in the mix's order
	All      RouteStats   // every request
	// The generator: requests sent in the arrival window per second (the
	// asked rate when it kept up), how late requests left, the most in
	// flight at once.
	Achieved       float64
	LagP50, LagP99 time.Duration
	LagMax         time.Duration
	PeakInFlight   int
	Wall           time.Duration
	// Health checks (every probe interval) late after OpenLateAfter, or
	// failed; the slowest answer.
	Probes, LateProbes, FailedProbes int
	HealthMax                        time.Duration
	// The liveness probe.
	Liveness, LivenessFailed, Restarts int
	Stalled                            time.Duration
	Stalls                             int
}

// SummarizeOpen reduces an open-loop result.
func SummarizeOpen(r Result, o OpenLoop) OpenSummary {
	s := OpenSummary{Scenario: r.Scenario, Wall: r.Wall, PeakInFlight: r.PeakInFlight,
		Stalled: r.Stalled(), Stalls: len(r.Stalls)}
	byRoute := map[string][]Request{}
	var lags []time.Duration
	inWindow := 0
	for _, q := range r.Requests {
		byRoute[q.Route] = append(byRoute[q.Route], q)
		if q.Cause != CauseNotSent {
			lags = append(lags, q.Lag())
			if q.Sent <= o.Duration {
				inWindow++
			}
		}
	}
	for _, p := range o.Mix.Paths() {
		s.Routes = append(s.Routes, newRouteStats(p, byRoute[p]))
	}
	s.All = newRouteStats("all", r.Requests)
	s.Achieved = float64(inWindow) / o.Duration.Seconds()
	if len(lags) > 0 {
		s.LagP50, s.LagP99, s.LagMax = Percentile(lags, 50), Percentile(lags, 99), slices.Max(lags)
	}
	s.Probes, s.LateProbes, s.FailedProbes = len(r.Probes), r.LateProbes(OpenLateAfter), r.FailedProbes()
	for _, p := range r.Probes {
		s.HealthMax = max(s.HealthMax, p.Latency)
	}
	s.Liveness, s.Restarts = len(r.Liveness), LivenessRestarts(r.Liveness)
	for _, p := range r.Liveness {
		if !LivenessOK(p) {
			s.LivenessFailed++
		}
	}
	return s
}

// GeneratorLagWarning is how late requests may leave (at the 99th
// percentile) before the report warns that the load was not quite the one
// asked. Latency counts from the scheduled time, so lateness can only make
// the server look slower, never faster; on a shared machine, every process
// is now and then held up for tens of milliseconds.
const GeneratorLagWarning = 100 * time.Millisecond

// Warning is a line for the report when the load was not the one asked:
// arrivals not sent, fewer sent than asked, or many sent late; empty
// otherwise.
func (s OpenSummary) Warning(o OpenLoop) string {
	var notSent int
	for _, c := range s.All.Causes {
		if c.Cause == CauseNotSent {
			notSent = c.N
		}
	}
	switch {
	case notSent > 0:
		return fmt.Sprintf("⚠ the load generator was the bottleneck: %d arrivals were not sent (open-files limit)", notSent)
	case s.Achieved < 0.95*o.Rate:
		return fmt.Sprintf("⚠ the load generator fell behind: it sent %.1f requests/s of the %s asked", s.Achieved, fmtRate(o.Rate))
	case s.LagP99 > GeneratorLagWarning:
		return fmt.Sprintf("⚠ requests left late: 1%% of them more than %s after their scheduled time (this machine was busy; the rate held at %.1f/s)",
			fmtWords(s.LagP99), s.Achieved)
	}
	return ""
}

func fmtRate(r float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", r), ".0") }
