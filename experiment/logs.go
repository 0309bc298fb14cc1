package experiment

import (
	"context"
	"sync"
	"time"

	"demo/childproc"
	"demo/contract"
)

// The children run with --log-format json: what the experiment learns from
// them it reads from the fields of their entries (package contract names
// them), never from the message text, which is for people.

// lineText is the text of one line of a child's output: an entry's
// message, or the raw line if it is not JSON (a panic, a usage error), so
// that error messages quote what a person would read.
func lineText(raw string) string {
	if e, ok := contract.ParseLogEntry(raw); ok {
		return e.Msg
	}
	return raw
}

// waitEvent waits up to timeout for c's first entry reporting ev.
func waitEvent(ctx context.Context, c *childproc.Child, ev contract.Event, timeout time.Duration) (contract.LogEntry, error) {
	var found contract.LogEntry
	_, err := c.WaitFor(ctx, "a log entry saying "+string(ev), func(l childproc.Line) bool {
		e, ok := contract.ParseLogEntry(l.Raw)
		if ok && e.Event == ev {
			found = e
		}
		return ok && e.Event == ev
	}, 0, timeout)
	return found, err
}

// started is when and where a request started processing.
type started struct {
	at     time.Time
	worker int
}

// serverLog is what one scenario learns from its server's log.
type serverLog struct {
	started map[string]started // by request id
	stalls  []contract.LogEntry
}

func newServerLog() serverLog { return serverLog{started: map[string]started{}} }

// add takes in one entry, if it is one the experiment reads.
func (sl *serverLog) add(e contract.LogEntry) {
	switch e.Event {
	case contract.EventRequestStarted:
		sl.started[e.RequestID] = started{e.Time, e.WorkerIndex()}
	case contract.EventStall:
		sl.stalls = append(sl.stalls, e)
	}
}

// logTap reads a server's log as it is written: the child's reader
// goroutine hands it every line (childproc's Spec.Text), so what the
// experiment needs is kept however many lines the server writes — under
// open-loop load, far more than a child keeps.
type logTap struct {
	mu sync.Mutex
	sl serverLog
}

func newLogTap() *logTap { return &logTap{sl: newServerLog()} }

// text keeps what matters of a raw line and returns its text.
func (t *logTap) text(raw string) string {
	e, ok := contract.ParseLogEntry(raw)
	if !ok {
		return raw
	}
	if e.Event == contract.EventRequestStarted || e.Event == contract.EventStall {
		t.mu.Lock()
		t.sl.add(e)
		t.mu.Unlock()
	}
	return e.Msg
}

// log returns what was read; call it once the server has exited.
func (t *logTap) log() serverLog {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sl
}

// apply fills in what the server saw of res's requests: when each started
// and on which worker, and the stalls of its loops after t0.
func (sl serverLog) apply(res *Result, t0 time.Time) {
	for i := range res.Requests {
		q := &res.Requests[i]
		if s, ok := sl.started[q.ID]; ok && q.ID != "" {
			q.Started, q.HasStart, q.Worker = s.at.Sub(t0), true, s.worker
		}
	}
	for _, e := range sl.stalls {
		if e.Time.Before(t0) {
			continue // start-up, not the experiment
		}
		d := e.Stall()
		res.Stalls = append(res.Stalls, Stall{
			Worker:    e.WorkerIndex(),
			Start:     e.Time.Add(-d).Sub(t0),
			Duration:  d,
			RequestID: e.RequestID,
			Cause:     e.Cause,
		})
	}
}
