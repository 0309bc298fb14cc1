package bench

import (
	"math"
	"testing"
)

func TestMedianCIFromOrderStatistics(t *testing.T) {
	xs := make([]float64, 20)
	for i := range xs {
		xs[len(xs)-1-i] = float64(i + 1) // unsorted on purpose
	}
	m := newMedianCI(xs)
	// With 20 measurements, P(B ≤ 5) = 0.0207 and P(B ≤ 6) = 0.0577 for
	// B ~ Binomial(20, ½): the 6th and 15th values bound the median with
	// 1 − 2·0.0207 = 95.9 %.
	if m.median != 10.5 || m.lo != 6 || m.hi != 15 || math.Abs(m.conf-0.9586) > 0.0001 {
		t.Errorf("median %v, interval %v … %v at %.4f; want 10.5, 6 … 15 at 0.9586", m.median, m.lo, m.hi, m.conf)
	}
	if m.q1 != 5.75 || m.q3 != 15.25 {
		t.Errorf("quartiles %v, %v; want 5.75, 15.25", m.q1, m.q3)
	}
	if m := newMedianCI([]float64{3, 1, 2, 5, 4}); m.conf != 0 || m.median != 3 || m.interval() != "-" {
		t.Errorf("5 values: median %v, conf %v, interval %q; want 3 and no interval (2·(½)⁵ > 5 %%)", m.median, m.conf, m.interval())
	}
	if m := newMedianCI([]float64{6, 1, 2, 5, 4, 3}); m.lo != 1 || m.hi != 6 || math.Abs(m.conf-(1-2.0/64)) > 1e-9 {
		t.Errorf("6 values: interval %v … %v at %v; want the extremes at 1 − 2/64", m.lo, m.hi, m.conf)
	}
}

func TestCostIsTheShareOfRequestsPerCPUSecondLost(t *testing.T) {
	c := &costResult{
		names: []string{demoAllOn, demoAllOff},
		// CPU nanoseconds per request: on costs 10 %, 20 % and 0 % more
		// than off in the three rounds, whatever the machine's speed.
		perReq: map[string][]float64{demoAllOn: {11_000, 24_000, 9_000}, demoAllOff: {10_000, 20_000, 9_000}},
	}
	m, ok := c.cost(costPairs[0])
	if !ok || math.Abs(m.median-(1-1/1.1)) > 1e-9 {
		t.Errorf("cost %v (%v); want the middle round's 1 − 10/11", m.median, ok)
	}
	if _, ok := c.cost(costPairs[3]); ok {
		t.Errorf("nginx's cost reported though nginx did not run")
	}
}
