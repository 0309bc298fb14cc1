package supervisor

import (
	"strconv"
	"syscall"
	"time"

	"demo/contract"
)

// State is where one worker process is in its life, as seen by the master.
// Allowed transitions:
//
//	Starting → Ready     it sent contract.Ready on the status pipe
//	Starting → Draining  shutdown, or its slot was removed (SIGTTOU), before it was ready
//	Ready    → Draining  the master sent it SIGTERM: shutdown, replaced by a
//	                     ready successor (SIGHUP, recycling) or its slot removed
//	Starting → Killed    not ready within the healthcheck timeout
//	Ready    → Killed    no Alive within the healthcheck timeout, or its loop
//	                     stalled longer than Config.Timeout (SIGABRT, then
//	                     SIGKILL once it sent its loop's stack or abortGrace passed)
//	Draining → Killed    still draining at its deadline (SIGKILL)
//	any      → Killed    SIGQUIT, a second SIGINT/SIGTERM, or the graceful
//	                     shutdown timed out (SIGKILL to every worker)
//	any      → Exited    it was waited for and its status pipe hit EOF
//
// Health checks only judge a worker by its state (see judge): a Draining
// worker is never killed for a stalled loop or silence, only at its drain
// deadline, and a Killed one only gets the SIGKILL that follows SIGABRT.
//
// Exited is terminal: a replacement is a new worker in Starting.
type State int

const (
	// Starting: the process exists but has not said it is ready.
	Starting State = iota
	// Ready: the worker accepts connections.
	Ready
	// Draining: SIGTERM sent; it finishes in-flight requests and exits.
	Draining
	// Killed: the master sent SIGABRT or SIGKILL and waits for the exit.
	Killed
	// Exited: reaped; the master holds nothing of it any more.
	Exited
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	case Killed:
		return "killed"
	case Exited:
		return "exited"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// child is one worker process in the table. Only the owner goroutine (the
// one in Run) reads or writes its fields; its status reader goroutine only
// sends events.
type child struct {
	slot  *slot
	index int // 1-based slot index, fixed at spawn
	total int // number of slots when it was spawned (its argv says so)
	gen   int // supervisor.gen at spawn: SIGHUP replaces every older worker
	pid   int
	state State

	started time.Time
	// bootFrom is when its start-up deadline counts from: started, moved
	// on by any time the master did not run since (see resumed).
	bootFrom  time.Time
	readyAt   time.Time
	lastAlive time.Time // last contract.Alive (zero: none yet)
	// lastBeat is when the loop last showed it runs: a contract.Beat, or a
	// contract.StallEnd, which the loop sends too (zero: neither yet).
	lastBeat time.Time
	// loop is what the last Beat carried, except that Requests, InFlight
	// and Conns are the latest the loop published (by Seq), which every
	// Alive carries too, so they stay current while the loop is blocked.
	loop contract.LoopStats
	// The current stall as the worker's detector reported it (zero values:
	// it did not): what blocks the loop ("GET / (request …) at …"), the
	// label part of that, and when the stalled callback began.
	stalledBy  string
	stallLabel string
	stallFrom  time.Time
	// stallNoted is when the current stall was last reported as ongoing
	// (zero: not yet), so long stalls log at most every stallProgressEvery.
	stallNoted time.Time
	abortedAt  time.Time // SIGABRT sent for --timeout; SIGKILL follows after abortGrace
	// timeoutLogged: the WORKER TIMEOUT entry is written (with the stack
	// the worker sent, or without it once abortGrace passed).
	timeoutLogged bool
	drainBy       time.Time    // SIGKILL if still draining then (zero: no deadline of its own)
	killedFor     string       // why the master killed it, for the reap log line
	death         RestartCause // why its slot gets a new process if it dies now

	// proc is the process itself: signals, pings and how it ended go
	// through it.
	proc process

	waited     bool // the process was waited for (evExited)
	readerDone bool // status pipe drained to EOF (or given up on)
}

func (c *child) name() string { return contract.WorkerName(c.index, c.total) }

// stallSince is when c's loop stopped moving, as precisely as known: when
// the callback the detector reported began, else the last sign the loop
// ran. Zero before the loop's first Beat.
func (c *child) stallSince() time.Time {
	if !c.stallFrom.IsZero() {
		return c.stallFrom
	}
	return c.lastBeat
}

// alive reports whether the process may still be running, i.e. whether a
// signal could reach it.
func (c *child) alive() bool { return !c.waited }

func (c *child) signal(sig syscall.Signal) error { return c.proc.signal(sig) }
