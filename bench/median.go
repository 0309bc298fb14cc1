package bench

import (
	"math"
	"slices"
)

// medianCI summarises repeated paired measurements: their median, the
// interval that holds the true median with probability conf (from the
// order statistics alone, so it assumes nothing about the noise's shape:
// the count of measurements below the true median is binomial, n and ½),
// and the quartiles, for how widely single measurements spread.
type medianCI struct {
	n              int
	median, lo, hi float64
	conf           float64 // 0: too few measurements for a 95 % interval (fewer than 6)
	q1, q3         float64
}

func newMedianCI(xs []float64) medianCI {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	m := medianCI{n: n, median: quantile(s, 0.5), q1: quantile(s, 0.25), q3: quantile(s, 0.75)}
	// The widest k whose tails, P(B ≤ k−1) on each side, stay within 2.5 %:
	// [x(k), x(n+1−k)] then covers the median with 1 − 2·P(B ≤ k−1).
	pmf, cdf := math.Pow(0.5, float64(n)), 0.0
	for k := 1; k <= n/2; k++ {
		cdf += pmf // P(B ≤ k−1)
		if cdf > 0.025 {
			break
		}
		m.lo, m.hi, m.conf = s[k-1], s[n-k], 1-2*cdf
		pmf *= float64(n-k+1) / float64(k)
	}
	return m
}

// quantile of sorted s, interpolating between neighbours.
func quantile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	pos := p * float64(len(s)-1)
	i := int(pos)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}
