package bench

import (
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets of microseconds: exact
// below 64 µs, then 32 buckets per power of two (under 3.2% error), up to
// days. It is a fixed array, so recording never allocates; each load
// connection keeps its own and they are merged at the end.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	// Microsecond values up to 2^40 (12 days) fit: the top bucket index is
	// (40-histSubBits-1)*histSub + 2*histSub - 1.
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits-1)*histSub + 2*histSub
)

func histIndex(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	if bits.Len64(us) > histMaxBits {
		us = 1<<histMaxBits - 1
	}
	shift := bits.Len64(us) - histSubBits - 1
	return shift*histSub + int(us>>shift)
}

// histValue is the middle of bucket i, in microseconds.
func histValue(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	shift := i/histSub - 1
	m := uint64(i - shift*histSub)
	lo := m << shift
	return float64(lo) + float64(uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d/time.Microsecond))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the samples
// fall (0 without samples). The top quantile is the exact maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	if rank == h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			d := time.Duration(histValue(i) * float64(time.Microsecond))
			return min(d, h.max)
		}
	}
	return h.max
}
