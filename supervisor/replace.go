package supervisor

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Replacing a worker without dropping a request always takes the same
// steps, whatever asked for it (SIGHUP, a Retire message):
//
//  1. spawn the successor into slot.next (same index, the current total);
//  2. wait for its Ready — meanwhile the old process keeps accepting;
//  3. promote: the successor becomes slot.cur and the old one gets SIGTERM,
//     stops accepting and finishes its in-flight requests within
//     GracefulTimeout.
//
// The listening socket is shared, so during step 3 a connection the old
// worker no longer accepts waits in the backlog for the new one: nothing is
// refused. If the successor dies (or is killed) before it is ready, the old
// process simply keeps serving.

// startRollingRestart begins (or extends) a SIGHUP restart. Workers are
// replaced one at a time in index order; the next step starts as soon as the
// previous successor is ready (the old process may still be draining, so
// capacity never drops below the wanted count).
//
// A SIGHUP during a rolling restart extends it: every worker spawned before
// the latest SIGHUP is replaced, including those the current restart already
// replaced, because the signal may announce a new deploy they predate. Slots
// still waiting are replaced once, not twice.
func (s *supervisor) startRollingRestart() {
	s.gen++
	if !s.rolling {
		s.rolling = true
		s.rollStarted = s.now()
		s.rollSteps = 0
	}
}

// advance runs after every event: it starts the next step of a rolling
// restart when the previous one is done, and notices when it is over.
func (s *supervisor) advance() {
	if !s.rolling || s.stopping {
		return
	}
	var candidate *slot
	pending := false
	for _, sl := range s.slots {
		if sl.next != nil && sl.nextFor == forRestart {
			return // one step at a time
		}
		if sl.cur == nil || sl.cur.gen >= s.gen {
			continue // empty slots are respawned with the current gen
		}
		pending = true
		// A slot whose process is not ready yet, or already being
		// replaced for another reason, is revisited on a later event.
		if candidate == nil && sl.next == nil && sl.cur.state == Ready {
			candidate = sl
		}
	}
	switch {
	case candidate != nil:
		s.startSuccessor(candidate, forRestart)
	case !pending:
		s.rolling = false
		s.log.Info(fmt.Sprintf("Rolling restart done: %d worker processes replaced in %v",
			s.rollSteps, s.now().Sub(s.rollStarted).Round(time.Millisecond)))
	}
}

// startSuccessor spawns sl.next to take over from sl.cur (or, for a new
// slot, to fill it). If it cannot even be spawned, what it was for is
// abandoned, as when it dies before it is ready.
func (s *supervisor) startSuccessor(sl *slot, why purpose) {
	c, err := s.spawn(sl)
	if err != nil {
		s.log.Error(fmt.Sprintf("Could not start a process for worker %d/%d (%v)", sl.index, len(s.slots), why), zap.Error(err))
		switch why {
		case forRestart:
			s.abortRollingRestart()
		case forScaleUp:
			s.dropNewSlot(sl) // it is the last: it was just added
		}
		return
	}
	sl.next, sl.nextFor = c, why
	switch why {
	case forRestart:
		s.countRestart(sl.index, RestartReload)
	case forRecycle:
		s.countRestart(sl.index, RestartRecycle)
	}
	s.logStarted(c)
}

// promote makes sl.next, which just got ready, serve sl and asks its
// predecessor to drain.
func (s *supervisor) promote(sl *slot) {
	old, nw := sl.cur, sl.next
	if sl.nextFor == forRestart {
		s.rollSteps++
	}
	sl.cur, sl.next, sl.nextFor = nw, nil, 0
	// A clean start: the slot is not crash-looping any more.
	sl.fastDeaths = 0
	if old == nil || !old.alive() {
		return
	}
	s.log.Info(fmt.Sprintf("Child process [%d] ready, replacing [%d] (worker %s)", nw.pid, old.pid, nw.name()))
	s.retire(old)
}

// retire asks a worker that no longer serves a slot to drain, with its own
// GracefulTimeout deadline (outside shutdown nothing else bounds it). A
// worker already being killed is left to that.
func (s *supervisor) retire(c *child) {
	if c.state == Killed || c.state == Draining {
		return
	}
	c.drainBy = s.now().Add(s.cfg.GracefulTimeout)
	s.terminate(c)
}

// retireRequested handles a worker's contract.Retire: it served its
// --limit-max-requests and keeps serving until its successor is ready.
func (s *supervisor) retireRequested(c *child, served int64) {
	sl := c.slot
	if s.stopping || sl.cur != c || c.state != Ready || sl.next != nil {
		// Draining, being replaced already, or shutting down: the
		// request is moot.
		return
	}
	s.log.Info(fmt.Sprintf("worker %s [%d] served %d requests, recycling", c.name(), c.pid, served))
	s.startSuccessor(sl, forRecycle)
}

// scaleUp adds one slot (SIGTTIN). Workers already running keep the total
// their argv was given; the new one is told the new total.
func (s *supervisor) scaleUp() {
	if m := s.cfg.MaxWorkers; m > 0 && len(s.slots) >= m {
		s.log.Warn(fmt.Sprintf("Already at %d worker processes, the most that can share this socket; not increasing further.", m))
		return
	}
	sl := &slot{index: len(s.slots) + 1}
	s.slots = append(s.slots, sl)
	s.startSuccessor(sl, forScaleUp)
}

// scaleDown removes the last slot (SIGTTOU); its processes drain.
func (s *supervisor) scaleDown() {
	if len(s.slots) <= 1 {
		s.log.Info("Already at one worker process; not decreasing further.")
		return
	}
	sl := s.slots[len(s.slots)-1]
	for _, c := range []*child{sl.next, sl.cur} {
		if c != nil && c.alive() {
			s.log.Info(fmt.Sprintf("Stopping child process [%d] (worker %s)", c.pid, c.name()))
			s.retire(c)
		}
	}
	s.removeSlot(sl)
}

// abortRollingRestart stops a rolling restart whose successor failed; the
// slots not yet restarted keep their old processes until the next SIGHUP.
func (s *supervisor) abortRollingRestart() {
	s.rolling = false
	s.log.Error(fmt.Sprintf("Rolling restart aborted after %d of %d workers; the others keep their old processes", s.rollSteps, len(s.slots)))
}

// dropNewSlot gives up a SIGTTIN slot whose first process failed. Only the
// last slot can go (indexes stay 1..n); one that is not last any more (a
// later SIGTTIN) reports false and is treated as an empty slot instead.
func (s *supervisor) dropNewSlot(sl *slot) bool {
	if s.slots[len(s.slots)-1] != sl {
		return false
	}
	s.removeSlot(sl)
	s.log.Info(fmt.Sprintf("Staying at %d worker processes", len(s.slots)))
	return true
}

// removeSlot forgets the last slot; processes still in it finish on their
// own (reap finds them in neither cur nor next).
func (s *supervisor) removeSlot(sl *slot) {
	sl.cur, sl.next, sl.nextFor = nil, nil, 0
	sl.respawnAt = time.Time{}
	if n := len(s.slots); n > 0 && s.slots[n-1] == sl {
		s.slots = s.slots[:n-1]
	}
	s.armRespawn()
}
