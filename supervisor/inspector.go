package supervisor

import (
	"context"
	"errors"
	"time"

	"demo/contract"
)

// WorkerSnapshot is one worker process as the master sees it at one moment.
type WorkerSnapshot struct {
	Index, Total int // Total: what its argv said when it was spawned
	PID          int
	State        State
	// Successor: it is booting to take over its slot (rolling restart,
	// recycling or SIGTTIN) and does not serve it yet.
	Successor bool
	Started   time.Time
	// SinceBeat is how long its event loop has not shown it runs (no Beat,
	// no StallEnd). Zero before its first Beat.
	SinceBeat time.Duration
	// Stall is how long its loop has not moved: since the stalled callback
	// began, when the worker's detector reported it (the figure the
	// worker logs), else SinceBeat. Zero before its first Beat.
	Stall time.Duration
	// Stalled: Stall is over StallThreshold.
	Stalled bool
	// SinceAlive is how long since it last answered a Ping (or since it
	// got ready, if it never did). Zero while starting.
	SinceAlive time.Duration
	// Loop is what the worker's loop reported with its last Beat; its
	// counters (requests, in flight, connections) are the latest the loop
	// published, which stay true while it is blocked.
	Loop contract.LoopStats
	// StalledBy is what the worker's detector says blocks its loop now
	// (empty when the loop beats).
	StalledBy string
}

// SlotSnapshot is what one worker index did across all the processes that
// had it (a replacement keeps its predecessor's index), for metrics:
// counters only grow, whatever restarts.
type SlotSnapshot struct {
	Index int
	// Wanted: the index is one of the Config.Workers slots now (SIGTTOU
	// removes the last; its history stays).
	Wanted bool
	// Requests served by its processes, the exited ones included.
	Requests uint64
	// InFlight and Conns of its live processes, as their loops last
	// published them.
	InFlight, Conns int
	// Blocked is the current stall of its processes' loops (the longest,
	// while an old and a new process overlap), zero unless one is stalled.
	Blocked time.Duration
	// Stalls: every stall its loops had, by length.
	Stalls StallHistogram
	// Restarts counts its new processes by cause, indexed by RestartCause.
	Restarts [numRestartCauses]uint64
}

// Snapshot is the master's whole table at one moment.
type Snapshot struct {
	Taken   time.Time
	Wanted  int              // worker slots wanted now
	Workers []WorkerSnapshot // every process not yet reaped, in start order
	Slots   []SlotSnapshot   // every worker index ever used, in order
}

// ErrNotRunning is returned by Inspector.Workers when its Run has returned.
var ErrNotRunning = errors.New("supervisor not running")

// Inspector answers questions about a running Run from other goroutines
// (the control socket `demo status` reads, the metrics). The owner
// goroutine answers between events, into a buffered channel — it never
// waits for the asker — so the answer is consistent and nothing else
// touches its table. Give one Inspector to one Run.
type Inspector struct {
	reqs chan chan Snapshot
	done chan struct{}
}

// NewInspector returns an Inspector to put in Config.Inspector.
func NewInspector() *Inspector {
	return &Inspector{reqs: make(chan chan Snapshot), done: make(chan struct{})}
}

// Workers returns every worker process not yet reaped, in start order. It
// waits for Run to start, until ctx ends or Run has returned.
func (in *Inspector) Workers(ctx context.Context) ([]WorkerSnapshot, error) {
	snap, err := in.Snapshot(ctx)
	return snap.Workers, err
}

// Snapshot returns the master's table. It waits for Run to start, until
// ctx ends or Run has returned.
func (in *Inspector) Snapshot(ctx context.Context) (Snapshot, error) {
	reply := make(chan Snapshot, 1)
	select {
	case in.reqs <- reply:
		return <-reply, nil
	case <-in.done:
		return Snapshot{}, ErrNotRunning
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	}
}

// stopped is called by Run as it returns.
func (in *Inspector) stopped() { close(in.done) }

func (s *supervisor) snapshot(now time.Time) Snapshot {
	snap := Snapshot{Taken: now, Wanted: len(s.slots), Workers: s.workerSnapshots(now)}
	s.history(len(s.slots)) // every wanted index has a record
	for i, h := range s.histories {
		st := SlotSnapshot{Index: i + 1, Wanted: i < len(s.slots), Requests: h.requests, Stalls: h.stalls.clone(), Restarts: h.restarts}
		for _, w := range snap.Workers {
			if w.Index != st.Index {
				continue
			}
			st.Requests += w.Loop.Requests
			st.InFlight += w.Loop.InFlight
			st.Conns += w.Loop.Conns
			if w.Stalled {
				st.Blocked = max(st.Blocked, w.Stall)
			}
		}
		snap.Slots = append(snap.Slots, st)
	}
	return snap
}

func (s *supervisor) workerSnapshots(now time.Time) []WorkerSnapshot {
	out := make([]WorkerSnapshot, 0, len(s.children))
	for _, w := range s.children {
		st := WorkerSnapshot{
			Index: w.index, Total: w.total, PID: w.pid, State: w.state,
			Successor: w.slot.next == w,
			Started:   w.started,
			Loop:      w.loop,
			StalledBy: w.stalledBy,
		}
		if !w.lastBeat.IsZero() {
			st.SinceBeat = now.Sub(w.lastBeat)
			st.Stall = now.Sub(w.stallSince())
			st.Stalled = st.Stall > StallThreshold
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
