package experiment

import (
	"fmt"
	"math"
	"time"
)

// Tolerance is how far (as a fraction) a measured wall time may stray from
// the model before the report flags it.
const Tolerance = 0.25

// ModelFormula explains Predict in one line, for the report.
const ModelFormula = "mixed: ⌈N/W⌉×calls×delay · async: calls×delay · threadpool: ⌈N/(size×W)⌉×calls×delay"

// Predict is the wall time the queueing model expects for s: one request
// costs calls×delay of waiting on the external API, and
//   - mixed: a worker's loop runs one request at a time, so W workers serve
//     N requests in ⌈N/W⌉ rounds (assuming the kernel spreads them evenly);
//   - async: the loop interleaves every request, so all finish in one round;
//   - threadpool: each worker runs up to size requests at once, so
//     ⌈N/(size×W)⌉ rounds.
func Predict(s Scenario, st Settings) time.Duration {
	one := time.Duration(st.Calls) * st.Delay
	rounds := 1
	switch s.Mode {
	case Mixed:
		rounds = ceilDiv(s.Concurrency, s.Workers)
	case Threadpool:
		rounds = ceilDiv(s.Concurrency, st.ThreadpoolSize*s.Workers)
	}
	return time.Duration(max(rounds, 1)) * one
}

func ceilDiv(a, b int) int {
	if b <= 0 {
		return a
	}
	return (a + b - 1) / b
}

// ModelCheck compares one scenario's measured wall time with Predict.
type ModelCheck struct {
	Predicted, Measured time.Duration
	// Deviation is (measured − predicted) / predicted: +1 means twice as long.
	Deviation float64
	// Reason is the likely cause when Deviates.
	Reason string
}

// Deviates reports whether the measurement is outside Tolerance.
func (m ModelCheck) Deviates() bool { return math.Abs(m.Deviation) > Tolerance }

// Percent is Deviation as a signed whole percentage, e.g. "+100%".
func (m ModelCheck) Percent() string { return fmt.Sprintf("%+.0f%%", m.Deviation*100) }

// Warning is the line the report shows for a deviating scenario; empty when
// the model held.
func (m ModelCheck) Warning() string {
	if !m.Deviates() {
		return ""
	}
	return fmt.Sprintf("⚠ deviates from the model by %s: %s", m.Percent(), m.Reason)
}

// CheckModel predicts r's wall time and, when the measurement strays, names
// the likely reason.
func CheckModel(r Result, st Settings) ModelCheck {
	m := ModelCheck{Predicted: Predict(r.Scenario, st), Measured: r.Wall}
	if m.Predicted > 0 {
		m.Deviation = float64(m.Measured-m.Predicted) / float64(m.Predicted)
	}
	if m.Deviates() {
		m.Reason = deviationReason(r, st, m)
	}
	return m
}

func deviationReason(r Result, st Settings, m ModelCheck) string {
	s := r.Scenario
	if n := r.Failed(); n > 0 {
		return fmt.Sprintf("%d of %d requests failed", n, len(r.Requests))
	}
	if m.Measured < m.Predicted {
		return "faster than the model: more requests ran at once than it assumes"
	}
	if s.Workers > 1 && s.Mode != Async {
		// The model assumes the kernel spreads connections evenly. A worker
		// whose loop is free when the burst arrives accepts every connection
		// waiting in the backlog, and only then starts (and blocks on) the
		// first one.
		counts := r.PerWorker()
		busiest, most := 0, 0
		for w := 1; w < len(counts); w++ {
			if counts[w] > most {
				busiest, most = w, counts[w]
			}
		}
		if fair := ceilDiv(s.Concurrency, s.Workers); most > fair {
			how := "ran them one after the other behind its blocked loop"
			if s.Mode == Threadpool {
				how = fmt.Sprintf("ran them through its own pool of %d", st.ThreadpoolSize)
			}
			return fmt.Sprintf("uneven accept: worker %d took %d of the %d connections (the model assumes %d each) and %s",
				busiest, most, len(r.Requests), fair, how)
		}
	}
	return "slower than the model: a busy machine or per-request overhead added time (a short --delay makes overhead count more)"
}
