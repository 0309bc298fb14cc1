package supervisor

import (
	"fmt"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// beginStop moves to the stopping phase: no respawns, no rolling restart,
// listener closed.
func (s *supervisor) beginStop(reason error) {
	s.stopping = true
	s.rolling = false
	if s.err == nil {
		s.err = reason
	}
	for _, sl := range s.slots {
		sl.respawnAt = time.Time{}
	}
	stopTimer(s.respawn)
	// Workers keep their own copies; closing ours means that once they have
	// all gone, new connections are refused rather than left in a backlog
	// nobody will accept from.
	if s.cfg.Listener != nil {
		s.cfg.Listener.Close()
	}
	s.sock.remove()
}

// shutdown starts a graceful stop: SIGTERM to every worker, SIGKILL for the
// ones still there after GracefulTimeout. reason is what Run returns (nil for
// a requested stop); why is logged.
func (s *supervisor) shutdown(reason error, why string) {
	if s.stopping {
		return
	}
	s.beginStop(reason)
	s.log.Info("Shutting down", zap.String("reason", why))
	for _, c := range s.children {
		if !c.alive() || c.state == Killed {
			continue
		}
		if c.state != Draining {
			s.log.Info(fmt.Sprintf("Waiting for child process [%d]", c.pid), zap.String("worker", c.name()))
			s.terminate(c)
		}
		// The one shutdown deadline governs every drain from now on.
		c.drainBy = time.Time{}
	}
	s.drain = time.NewTimer(s.cfg.GracefulTimeout)
	s.drainAt = s.now().Add(s.cfg.GracefulTimeout)
}

// terminate asks c to drain: it stops accepting, finishes its in-flight
// requests and exits.
func (s *supervisor) terminate(c *child) {
	c.state = Draining
	if err := c.signal(syscall.SIGTERM); err != nil {
		s.log.Error("SIGTERM failed", zap.Int("pid", c.pid), zap.Error(err))
	}
}

// drainExpired kills the workers that did not finish within GracefulTimeout.
// The shutdown still counts as graceful: this is the configured policy.
func (s *supervisor) drainExpired() {
	s.drain = nil
	s.log.Warn(fmt.Sprintf("Graceful shutdown timed out after %v", s.cfg.GracefulTimeout))
	s.killAll()
}

// kill stops at once: SIGKILL to every worker; Run will return reason.
func (s *supervisor) kill(reason error) {
	if !s.stopping {
		s.beginStop(reason)
	} else if s.err == nil {
		s.err = reason
	}
	stopTimer(s.drain)
	s.drain = nil
	s.forced = true
	s.killAll()
}

func (s *supervisor) killAll() {
	for _, c := range s.children {
		if !c.alive() {
			continue
		}
		c.state = Killed
		s.log.Warn(fmt.Sprintf("Killing child process [%d]", c.pid), zap.String("worker", c.name()))
		s.sigkill(c)
	}
}
