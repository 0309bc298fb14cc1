package experiment

import (
	"math"
	"slices"
	"time"
)

// Stats describes a set of latencies.
type Stats struct {
	N        int
	P50, Max time.Duration
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of ds:
// the smallest value with at least p% of the values at or below it. It is
// always a value that was measured, which matters with two requests: their
// median is the faster one, not an average nobody experienced. Zero for no
// values.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// NewStats summarises ds.
func NewStats(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	return Stats{N: len(ds), P50: Percentile(ds, 50), Max: slices.Max(ds)}
}

// RequestStats summarises the latencies of the requests that succeeded.
func (r Result) RequestStats() Stats {
	var ds []time.Duration
	for _, q := range r.Requests {
		if q.OK() {
			ds = append(ds, q.Latency())
		}
	}
	return NewStats(ds)
}

// HealthStats summarises the latencies of the probes that succeeded.
func (r Result) HealthStats() Stats {
	var ds []time.Duration
	for _, p := range r.Probes {
		if p.OK() {
			ds = append(ds, p.Latency)
		}
	}
	return NewStats(ds)
}

// Stalled is the total time the workers' loops reported being blocked.
func (r Result) Stalled() time.Duration {
	var sum time.Duration
	for _, s := range r.Stalls {
		sum += s.Duration
	}
	return sum
}

// LateProbes counts probes slower than late, failed ones included: a load
// balancer would have counted both against the server.
func (r Result) LateProbes(late time.Duration) int {
	n := 0
	for _, p := range r.Probes {
		if !p.OK() || p.Latency > late {
			n++
		}
	}
	return n
}

// Failed counts requests that did not get a 200.
func (r Result) Failed() int {
	n := 0
	for _, q := range r.Requests {
		if !q.OK() {
			n++
		}
	}
	return n
}

// FailedProbes counts probes that did not get a 200.
func (r Result) FailedProbes() int {
	n := 0
	for _, p := range r.Probes {
		if !p.OK() {
			n++
		}
	}
	return n
}

// PerWorker counts, for worker indexes 1..Workers, how many requests each
// one started; index 0 holds requests whose worker is unknown.
func (r Result) PerWorker() []int {
	counts := make([]int, r.Scenario.Workers+1)
	for _, q := range r.Requests {
		if q.Worker >= 1 && q.Worker <= r.Scenario.Workers {
			counts[q.Worker]++
		} else {
			counts[0]++
		}
	}
	return counts
}

// end is the last moment anything in the result happened, for scaling axes.
func (r Result) end() time.Duration {
	end := r.Wall
	for _, q := range r.Requests {
		end = max(end, q.Finished)
	}
	for _, p := range r.Probes {
		end = max(end, p.Sent+p.Latency)
	}
	return end
}
