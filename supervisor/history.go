package supervisor

import (
	"strconv"
	"time"
)

// RestartCause says why a worker slot got a new process.
type RestartCause int

const (
	// RestartCrash: its process died on its own (or failed to boot).
	RestartCrash RestartCause = iota
	// RestartTimeout: the master killed it, its loop stalled past Config.Timeout.
	RestartTimeout
	// RestartHealthcheck: the master killed it, not ready in time or no
	// longer answering pings (Config.HealthcheckTimeout).
	RestartHealthcheck
	// RestartRecycle: it served its --limit-max-requests.
	RestartRecycle
	// RestartReload: a SIGHUP rolling restart.
	RestartReload

	numRestartCauses
)

// RestartCauses lists every cause, in a fixed order.
var RestartCauses = []RestartCause{RestartCrash, RestartTimeout, RestartHealthcheck, RestartRecycle, RestartReload}

func (c RestartCause) String() string {
	switch c {
	case RestartCrash:
		return "crash"
	case RestartTimeout:
		return "timeout"
	case RestartHealthcheck:
		return "healthcheck"
	case RestartRecycle:
		return "recycle"
	case RestartReload:
		return "reload"
	}
	return "RestartCause(" + strconv.Itoa(int(c)) + ")"
}

// StallBuckets are the upper bounds of StallHistogram's buckets: from
// asyncio's slow-callback threshold to minutes.
var StallBuckets = []time.Duration{
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute, 5 * time.Minute,
}

// StallHistogram counts how long event loops were stalled, one observation
// per stall, as the worker's detector measured it (or, with the detector
// off, the master from missing heartbeats).
type StallHistogram struct {
	// Counts[i] counts the stalls of at most StallBuckets[i] (and more
	// than the bound before); the last counts those above every bound.
	Counts []uint64
	Sum    time.Duration
	Count  uint64
}

func (h *StallHistogram) observe(d time.Duration) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(StallBuckets)+1)
	}
	i := 0
	for i < len(StallBuckets) && d > StallBuckets[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += d
	h.Count++
}

func (h StallHistogram) clone() StallHistogram {
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// slotHistory is what the master remembers of one worker index across its
// processes (and across SIGTTOU/SIGTTIN), so that counters only grow.
type slotHistory struct {
	requests uint64 // served by its processes that have exited
	restarts [numRestartCauses]uint64
	stalls   StallHistogram
}

// history returns the record of worker index (1-based), creating it.
func (s *supervisor) history(index int) *slotHistory {
	for len(s.histories) < index {
		s.histories = append(s.histories, &slotHistory{})
	}
	return s.histories[index-1]
}

// countRestart records that slot index gets a new process because of c.
func (s *supervisor) countRestart(index int, c RestartCause) {
	s.history(index).restarts[c]++
}
