package supervisor

import (
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"demo/contract"
)

// Crash-loop backoff: a worker slot whose processes die within fastDeath of
// starting backoffAfter times in a row waits backoffBase, doubling up to
// backoffMax, before each further restart.
const (
	fastDeath    = time.Second
	backoffAfter = 5
	backoffBase  = 100 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// purpose says why a slot's next process is booting.
type purpose int

const (
	forRestart purpose = iota + 1 // one step of a SIGHUP rolling restart
	forRecycle                    // its predecessor sent contract.Retire
	forScaleUp                    // a new slot from SIGTTIN: no predecessor
)

func (p purpose) String() string {
	switch p {
	case forRestart:
		return "rolling restart"
	case forRecycle:
		return "recycling"
	case forScaleUp:
		return "SIGTTIN"
	}
	return "purpose(" + strconv.Itoa(int(p)) + ")"
}

// slot is one worker index: the process serving it, the one booting to
// take over, and its crash-loop bookkeeping.
type slot struct {
	index int
	// cur serves the slot; nil while empty (between a death and its
	// respawn, or while a SIGTTIN slot's first process boots).
	cur *child
	// next boots to replace cur (or to fill a new slot); when it is ready
	// it becomes cur and the old cur drains. At most one at a time.
	next       *child
	nextFor    purpose
	fastDeaths int          // consecutive deaths within fastDeath of starting
	respawnAt  time.Time    // zero unless a backed-off respawn is pending
	diedOf     RestartCause // why the process that last served it died
}

// maybeAnnounce logs the "running on" line once every slot has a ready worker.
func (s *supervisor) maybeAnnounce() {
	if s.announced || s.stopping {
		return
	}
	for _, sl := range s.slots {
		if sl.cur == nil || sl.cur.state != Ready {
			return
		}
	}
	s.announced = true
	s.log.Info(contract.RunningMsg(contract.ServeName, s.cfg.Addr), contract.RunningFields(s.cfg.Addr))
}

func (s *supervisor) logStarted(c *child) {
	s.log.Info(contract.WorkerStartedMsg(c.pid, c.name()), contract.WorkerStartedFields(c.name(), c.pid))
}

// reap forgets a worker that exited and whose status pipe is drained, and
// decides what its exit means for its slot.
func (s *supervisor) reap(c *child) {
	c.state = Exited
	// Its requests stay counted for its index: the metrics' counters only grow.
	s.history(c.index).requests += c.loop.Requests
	for i, p := range s.children {
		if p == c {
			s.children = append(s.children[:i], s.children[i+1:]...)
			break
		}
	}
	sl := c.slot
	fields := []zap.Field{zap.String("worker", c.name()), zap.String("status", c.proc.exit().desc)}
	if c.killedFor != "" {
		fields = append(fields, zap.String("killed", c.killedFor))
	}
	switch {
	case s.stopping:
		if sl.cur == c {
			sl.cur = nil
		}
		if sl.next == c {
			sl.next = nil
		}
		s.log.Info(fmt.Sprintf("Child process [%d] stopped", c.pid), fields...)
	case sl.next == c:
		sl.next = nil
		s.nextFailed(sl, c, fields)
	case sl.cur != c:
		// Retired on purpose: replaced, or its slot removed.
		s.log.Info(fmt.Sprintf("Child process [%d] stopped", c.pid), fields...)
	default:
		sl.cur = nil
		s.slotDied(sl, c, fields)
	}
}

// slotDied handles the death of the process serving sl.
func (s *supervisor) slotDied(sl *slot, c *child, fields []zap.Field) {
	ex := c.proc.exit()
	switch {
	case ex.code == contract.ExitStartupFailure:
		// Like gunicorn's WORKER_BOOT_ERROR: a worker that cannot start
		// will not start next time either, so respawning is pointless.
		s.log.Error(fmt.Sprintf("Child process [%d] failed to boot", c.pid), fields...)
		s.shutdown(fmt.Errorf("worker %s [%d] could not start (exit status %d)", c.name(), c.pid, contract.ExitStartupFailure), "a worker failed to boot")
	case !s.announced:
		s.log.Error(fmt.Sprintf("Child process [%d] died during start-up", c.pid), fields...)
		s.shutdown(fmt.Errorf("worker %s [%d] exited during start-up: %s", c.name(), c.pid, ex.desc), "a worker died during start-up")
	default:
		s.log.Warn(fmt.Sprintf("Child process [%d] died", c.pid), fields...)
		sl.diedOf = c.death
		if s.now().Sub(c.started) < fastDeath {
			sl.fastDeaths++
		} else {
			sl.fastDeaths = 0
		}
		if sl.next != nil {
			// Its successor is already booting and takes over when ready.
			return
		}
		s.replace(sl)
	}
}

// nextFailed handles a process that died before it was ready to take over
// sl: the operation it was for is abandoned and whatever serves sl keeps
// serving. Only when sl has nobody left does the respawn policy apply.
func (s *supervisor) nextFailed(sl *slot, c *child, fields []zap.Field) {
	why := sl.nextFor
	sl.nextFor = 0
	if why == forScaleUp {
		s.log.Error(fmt.Sprintf("Child process [%d] failed to boot; not adding worker %s", c.pid, c.name()), fields...)
		if s.dropNewSlot(sl) {
			return
		}
	}
	if sl.cur == nil {
		// Nobody serves sl (a later SIGTTIN slot, or its predecessor died
		// meanwhile): the respawn policy applies as to any death.
		s.slotDied(sl, c, fields)
	} else {
		s.log.Error(fmt.Sprintf("Child process [%d] failed to boot; keeping [%d] (worker %s)", c.pid, sl.cur.pid, sl.cur.name()), fields...)
		if why == forRecycle {
			s.log.Warn(fmt.Sprintf("Recycling of [%d] abandoned; it keeps serving", sl.cur.pid))
		}
	}
	if why == forRestart && !s.stopping {
		s.abortRollingRestart()
	}
}

// replace refills a slot whose worker died, at once or after a backoff if the
// slot is crash-looping.
func (s *supervisor) replace(sl *slot) {
	if sl.fastDeaths < backoffAfter {
		s.restart(sl)
		return
	}
	delay := backoffDelay(sl.fastDeaths)
	s.log.Warn(fmt.Sprintf("Worker %d/%d died within %v of starting %d times in a row; restarting it in %v",
		sl.index, len(s.slots), fastDeath, sl.fastDeaths, delay))
	sl.respawnAt = s.now().Add(delay)
	s.armRespawn()
}

// backoffDelay is the wait before restarting a slot whose processes died
// fast n times in a row (n >= backoffAfter).
func backoffDelay(n int) time.Duration {
	if n -= backoffAfter; n < 0 {
		return 0
	} else if n < 6 {
		return min(backoffBase<<n, backoffMax)
	}
	return backoffMax
}

// restart starts a new process in the empty slot sl; a failure to even
// start counts as a fast death, so a missing executable backs off instead
// of spinning.
func (s *supervisor) restart(sl *slot) {
	c, err := s.spawn(sl)
	if err != nil {
		s.log.Error("Could not restart worker", zap.Error(err))
		sl.fastDeaths = max(sl.fastDeaths+1, backoffAfter)
		s.replace(sl)
		return
	}
	sl.cur = c
	s.countRestart(sl.index, sl.diedOf)
	s.logStarted(c)
}

func (s *supervisor) armRespawn() {
	var next time.Time
	for _, sl := range s.slots {
		if !sl.respawnAt.IsZero() && (next.IsZero() || sl.respawnAt.Before(next)) {
			next = sl.respawnAt
		}
	}
	if next.IsZero() {
		stopTimer(s.respawn)
		return
	}
	if s.respawn == nil {
		s.respawn = time.NewTimer(next.Sub(s.now()))
		return
	}
	s.respawn.Reset(next.Sub(s.now()))
}

func (s *supervisor) respawnDue() {
	now := s.now()
	for _, sl := range s.slots {
		if !sl.respawnAt.IsZero() && !now.Before(sl.respawnAt) {
			sl.respawnAt = time.Time{}
			s.restart(sl)
		}
	}
	s.armRespawn()
}
