package supervisor

import (
	"context"
	"errors"
	"time"

	"demo/contract"
)

// WorkerStatus is one worker process as the master sees it at one moment.
type WorkerStatus struct {
	Index, Total int // Total: what its argv said when it was spawned
	PID          int
	State        State
	// Successor: it is booting to take over its slot (rolling restart,
	// recycling or SIGTTIN) and does not serve it yet.
	Successor bool
	Started   time.Time
	// SinceBeat is how long its event loop has not beaten: the current
	// stall, to within one contract.HeartbeatInterval. Zero before its
	// first Beat.
	SinceBeat time.Duration
	// Stalled: SinceBeat is over StallThreshold.
	Stalled bool
	// SinceAlive is how long since it last answered a Ping (or since it
	// got ready, if it never did). Zero while starting.
	SinceAlive time.Duration
	// Loop is what the worker's loop reported with its last Beat.
	Loop contract.LoopStats
	// StalledBy is what the worker's detector says blocks its loop now
	// (empty when the loop beats).
	StalledBy string
}

// ErrNotRunning is returned by Control.Workers when its Run has returned.
var ErrNotRunning = errors.New("supervisor not running")

// Control answers questions about a running Run from other goroutines (a
// status endpoint, `demo status`). The owner goroutine answers between
// events, so the answer is consistent and nothing else touches its table.
// Give one Control to one Run.
type Control struct {
	reqs chan chan []WorkerStatus
	done chan struct{}
}

// NewControl returns a Control to put in Config.Control.
func NewControl() *Control {
	return &Control{reqs: make(chan chan []WorkerStatus), done: make(chan struct{})}
}

// Workers returns every worker process not yet reaped, in start order. It
// waits for Run to start, until ctx ends or Run has returned.
func (c *Control) Workers(ctx context.Context) ([]WorkerStatus, error) {
	reply := make(chan []WorkerStatus, 1)
	select {
	case c.reqs <- reply:
		return <-reply, nil
	case <-c.done:
		return nil, ErrNotRunning
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stopped is called by Run as it returns.
func (c *Control) stopped() { close(c.done) }

func (s *supervisor) snapshot(now time.Time) []WorkerStatus {
	out := make([]WorkerStatus, 0, len(s.procs))
	for _, w := range s.procs {
		st := WorkerStatus{
			Index: w.index, Total: w.total, PID: w.pid, State: w.state,
			Successor: w.slot.next == w,
			Started:   w.started,
			Loop:      w.loop,
			StalledBy: w.stalledBy,
		}
		if !w.lastBeat.IsZero() {
			st.SinceBeat = now.Sub(w.lastBeat)
			st.Stalled = st.SinceBeat > StallThreshold
		}
		if since := w.lastAlive; !since.IsZero() || !w.readyAt.IsZero() {
			if w.readyAt.After(since) {
				since = w.readyAt
			}
			st.SinceAlive = now.Sub(since)
		}
		out = append(out, st)
	}
	return out
}
