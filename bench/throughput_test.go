package bench

import (
	"testing"
	"time"
)

// TestMedianRunLatencyFromRunsThatHaveIt: wrk with pipelining sometimes
// records no latency; such a run gives no latency figure, not a zero that
// pulls the median row's down.
func TestMedianRunLatencyFromRunsThatHaveIt(t *testing.T) {
	run := func(requests int64, p50, p99 time.Duration) measurement {
		m := measurement{cpu: time.Second, window: time.Second}
		m.load.requests, m.load.elapsed = requests, time.Second
		if p99 > 0 {
			m.load.lat = pointHistogram(requests, p50, p99, p99)
		}
		return m
	}
	m := medianRun([]measurement{
		run(1000, 0, 0),
		run(2000, 3*time.Millisecond, 9*time.Millisecond),
		run(3000, 0, 0),
	})
	if m.fig.perCPU != 2000 {
		t.Errorf("requests per CPU-second %v, want the median run's 2000", m.fig.perCPU)
	}
	if !m.fig.hasLat || m.fig.p99 < 9*time.Millisecond || m.fig.p50 < 2*time.Millisecond {
		t.Errorf("latency p50 %v p99 %v (has %v), want the one run that recorded it", m.fig.p50, m.fig.p99, m.fig.hasLat)
	}
	if none := medianRun([]measurement{run(1000, 0, 0), run(2000, 0, 0)}); none.fig.hasLat {
		t.Errorf("no run recorded latency, yet the row has one: %+v", none.fig)
	}
}
