package supervisor

import (
	"fmt"
	"syscall"
	"time"

	"go.uber.org/zap"

	"demo/contract"
)

// Two signals of health, kept apart (see contract.go):
//
//   - Alive answers the master's Ping from a goroutine beside the worker's
//     loop: it proves the process runs, even while its loop is blocked.
//     Silence for Config.HealthcheckTimeout kills the process.
//   - Beat comes from the loop goroutine itself: the time since the last one
//     is how long the loop has been stalled. Stalls are reported; only with
//     Config.Timeout set do they kill (gunicorn's WORKER TIMEOUT).
const (
	// StallThreshold is how long a loop may go without a Beat before it
	// counts as stalled: two missed heartbeats, so timer jitter on a busy
	// machine is not reported as a stall.
	StallThreshold = 2 * contract.HeartbeatInterval
	// abortGrace is how long a worker aborted for --timeout has to send its
	// loop's stack before SIGKILL (gunicorn's arbiter waits about as long).
	abortGrace = time.Second
)

// stallProgressEvery spaces the "still blocked after Xs" warnings of a
// long stall. A variable only so the test master can shorten it.
var stallProgressEvery = 5 * time.Second

// healthLimits are the configured limits judge applies.
type healthLimits struct {
	healthcheck time.Duration // Alive silence (and start-up) limit
	timeout     time.Duration // loop stall limit; 0 = off
	stallEvery  time.Duration // spacing of progress warnings
}

// action is what judge decides the master must do about one worker now.
type action int

const (
	actNone        action = iota
	actKillBoot           // not ready within the healthcheck timeout: SIGKILL
	actKillSilent         // no Alive within the healthcheck timeout: SIGKILL
	actAbort              // loop stalled longer than Config.Timeout: SIGABRT, for its stack
	actKillAborted        // no stack abortGrace after SIGABRT: SIGKILL
	actKillDrain          // still draining at its own deadline: SIGKILL
)

// verdict is judge's answer: an action, plus whether to log that the
// current stall goes on (at most every stallEvery).
type verdict struct {
	act      action
	stall    time.Duration // how long the loop has not moved (0 before the first Beat)
	progress bool
}

// judge is the whole health policy for one worker at time now, free of side
// effects so that a table test can cover it.
//
// Who is judged by what:
//   - Starting: only the start-up limit (healthcheck timeout since spawn);
//     its loop has not beaten yet, so it is not judged for stalls.
//   - Ready: Alive silence since it got ready; with a timeout, its loop
//     stall once it has sent its first Beat.
//   - Draining: only its drain deadline. Its loop may well be blocked (an
//     in-flight request): the graceful timeout governs it, not --timeout.
//   - Killed: only the SIGKILL that follows SIGABRT.
//
// Stalls are measured (and reported) in every state while beats have been
// seen, since that is what `demo status` shows: from the stalled
// callback's start when the worker's detector reported it, else from the
// last Beat.
func judge(c *child, now time.Time, lim healthLimits) verdict {
	var v verdict
	if since := c.stallSince(); !since.IsZero() {
		v.stall = now.Sub(since)
		if v.stall > StallThreshold && c.state != Killed {
			last := c.stallNoted
			if last.IsZero() {
				last = since
			}
			v.progress = now.Sub(last) >= lim.stallEvery
		}
	}
	switch c.state {
	case Starting:
		if now.Sub(c.bootFrom) > lim.healthcheck {
			v.act = actKillBoot
		}
	case Ready:
		since := c.readyAt
		if c.lastAlive.After(since) {
			since = c.lastAlive
		}
		switch {
		case lim.timeout > 0 && !c.stallSince().IsZero() && v.stall > lim.timeout:
			v.act = actAbort
		case now.Sub(since) > lim.healthcheck:
			v.act = actKillSilent
		}
	case Draining:
		if !c.drainBy.IsZero() && now.After(c.drainBy) {
			v.act = actKillDrain
		}
	case Killed:
		if !c.abortedAt.IsZero() && !c.timeoutLogged && now.Sub(c.abortedAt) >= abortGrace {
			v.act = actKillAborted
		}
	}
	return v
}

// checkHealth runs every HeartbeatInterval on the owner goroutine: ping
// every live worker, then act on judge's verdicts.
func (s *supervisor) checkHealth(now time.Time) {
	for _, c := range s.children {
		if !c.alive() {
			continue
		}
		c.proc.ping()
		v := judge(c, now, s.limits)
		if v.progress && v.act != actAbort { // the WORKER TIMEOUT entry says it all
			s.noteStall(c, now, v.stall)
		}
		switch v.act {
		case actKillBoot:
			s.healthKill(c, fmt.Sprintf("Child process [%d] not ready after %v, killed", c.pid, s.limits.healthcheck), "not ready in time")
		case actKillSilent:
			s.healthKill(c, fmt.Sprintf("Child process [%d] did not answer for %v, killed", c.pid, s.limits.healthcheck), "did not answer pings")
		case actAbort:
			s.abort(c, now)
		case actKillAborted:
			s.timedOut(c, now, "", "")
		case actKillDrain:
			s.log.Warn(fmt.Sprintf("Child process [%d] did not finish draining within %v, killing it", c.pid, s.cfg.GracefulTimeout))
			c.state = Killed
			c.killedFor = "drain timeout"
			s.sigkill(c)
		}
	}
}

// healthKill kills a worker that failed a health check; it is replaced when
// reaped, like any worker that died.
func (s *supervisor) healthKill(c *child, line, why string) {
	s.log.Error(line, zap.String("worker", c.name()))
	c.state = Killed
	c.killedFor = why
	c.death = RestartHealthcheck
	s.sigkill(c)
}

func (s *supervisor) sigkill(c *child) {
	if err := c.signal(syscall.SIGKILL); err != nil {
		s.log.Error("SIGKILL failed", zap.Int("pid", c.pid), zap.Error(err))
	}
}

// seconds formats d like "20.0s", the way the stall warnings read.
func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
