package supervisor

import (
	"fmt"
	"time"
)

// The master itself can stop running while its workers go on: Ctrl+Z
// (its workers have process groups of their own, so the terminal stops
// only the master), a `stty tostop` terminal stopping a background master
// that logs (jobcontrol.go), SIGSTOP, a debugger, a machine too busy to
// schedule it. Meanwhile it sends no pings and reads no status, so when it
// runs again its workers look silent, not ready and stalled for exactly
// as long as it was away, and their queued beats would read as a stall.
// None of that is the workers' doing: the time the master did not run is
// not held against them.

// pauseThreshold: the owner goroutine wakes at least every
// contract.HeartbeatInterval (the health ticker); a gap this long means it
// did not run. Two missed ticks, as for a worker's stalled loop.
const pauseThreshold = StallThreshold

// woke notes that the owner goroutine runs at now, before it handles what
// woke it; after a gap of pauseThreshold or more it first forgives the gap
// (resumed).
func (s *supervisor) woke(now time.Time) {
	last := s.awake
	s.awake = now
	if gap := now.Sub(last); !last.IsZero() && gap >= pauseThreshold {
		s.resumed(gap)
	}
}

// resumed moves every health clock of every worker forward by gap, the
// time the master did not run: a worker then has as long to answer, get
// ready or beat as if the master had not been away. Its events queued
// meanwhile arrive after this, so a queued beat is no stall. Drain
// deadlines do not move: draining went on meanwhile, in real time.
func (s *supervisor) resumed(gap time.Duration) {
	s.log.Warn(fmt.Sprintf("Parent process [%d] did not run for %s (stopped, or starved of CPU); its workers are judged from now on, not for that time", s.pid, seconds(gap)))
	shift := func(t *time.Time) {
		if !t.IsZero() {
			*t = t.Add(gap)
		}
	}
	for _, c := range s.children {
		shift(&c.bootFrom)
		shift(&c.readyAt)
		shift(&c.lastAlive)
		shift(&c.lastBeat)
		shift(&c.stallFrom)
		shift(&c.stallNoted)
		shift(&c.abortedAt)
	}
}
