package supervisor

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"demo/contract"
)

// A stall is told once, by two voices that agree:
//
//   - the worker's detector (--slow-callback) logs the first warning, with
//     the call that blocks the loop, and the total once the callback
//     returns; it sends both figures here too (contract.Stall, StallEnd);
//   - the master reminds that the stall goes on, every stallProgressEvery,
//     from the detector's start time, and measures the stall the same way
//     for `demo status` and the metrics. It logs a total itself only for a
//     stall the detector did not report (the detector off).
//
// With --timeout, the master ends a stall it judged too long with one
// WORKER TIMEOUT entry holding the loop's stack (see timeoutEntry).

// beat handles a contract.Beat: the loop runs. A stall the detector did not
// report is logged and counted here, by the gap between beats.
func (s *supervisor) beat(c *child, now time.Time, msg contract.Msg) {
	if gap := now.Sub(c.lastBeat); !c.lastBeat.IsZero() && gap > StallThreshold {
		if c.stallFrom.IsZero() {
			s.log.Warn(contract.WorkerStallMsg(c.name(), c.pid, gap), contract.StallFields(contract.EventWorkerStall, c.name(), gap, "", "", ""))
			s.history(c.index).stalls.observe(gap)
		} else {
			// The detector logged it, but its total never came (a full
			// status pipe drops messages): count it as measured here.
			s.history(c.index).stalls.observe(now.Sub(c.stallFrom))
		}
	}
	c.lastBeat = now
	c.clearStall()
	if msg.Text != "" {
		var st contract.LoopStats
		// Stats are for display only: a bad payload just isn't shown.
		if json.Unmarshal([]byte(msg.Text), &st) == nil {
			counts := c.loop
			c.loop = st
			if st.Seq < counts.Seq { // an Alive brought newer counters
				c.loop.Requests, c.loop.InFlight, c.loop.Conns, c.loop.Seq = counts.Requests, counts.InFlight, counts.Conns, counts.Seq
			}
		}
	}
}

// alive handles a contract.Alive: the process answers, and the counters
// it carries are the loop's latest, even while the loop is blocked.
func (s *supervisor) alive(c *child, now time.Time, msg contract.Msg) {
	c.lastAlive = now
	if msg.Text == "" {
		return
	}
	var st contract.LoopStats
	if json.Unmarshal([]byte(msg.Text), &st) == nil && st.Seq >= c.loop.Seq {
		c.loop.Requests, c.loop.InFlight, c.loop.Conns, c.loop.Seq = st.Requests, st.InFlight, st.Conns, st.Seq
	}
}

// stallReported handles a contract.Stall: the detector says what blocks
// the loop, and for how long already.
func (s *supervisor) stallReported(c *child, now time.Time, msg contract.Msg) {
	c.stalledBy = msg.Text
	c.stallLabel, _, _ = strings.Cut(msg.Text, " at ")
	if c.stallFrom.IsZero() {
		c.stallFrom = now.Add(-time.Duration(msg.Value))
	}
}

// stallEnded handles a contract.StallEnd: a callback the detector timed
// returned, after msg.Value; the worker has logged that total, and it is
// the one counted here. The loop sent it, so the loop runs again.
func (s *supervisor) stallEnded(c *child, now time.Time, msg contract.Msg) {
	s.history(c.index).stalls.observe(time.Duration(msg.Value))
	c.lastBeat = now
	c.clearStall()
}

func (c *child) clearStall() {
	c.stalledBy, c.stallLabel, c.stallFrom, c.stallNoted = "", "", time.Time{}, time.Time{}
}

// noteStall logs that c's stall goes on.
func (s *supervisor) noteStall(c *child, now time.Time, stall time.Duration) {
	c.stallNoted = now
	s.log.Warn(contract.WorkerStallingMsg(c.name(), c.pid, stall, c.stallLabel),
		contract.StallFields(contract.EventWorkerStalling, c.name(), stall, c.stallLabel, "", ""))
}

// abort starts the end of a worker whose loop stalled past --timeout: it
// is asked for its loop's stack (SIGABRT), and killed once that arrives
// or abortGrace passed, whichever comes first.
func (s *supervisor) abort(c *child, now time.Time) {
	c.state = Killed
	c.killedFor = "worker timeout"
	c.death = RestartTimeout
	c.abortedAt = now
	if err := c.signal(syscall.SIGABRT); err != nil {
		s.log.Debug("SIGABRT failed", zap.Int("pid", c.pid), zap.Error(err))
		s.timedOut(c, now, "", "SIGABRT failed: "+err.Error())
	}
}

// stackReceived handles a contract.Stack: the worker's answer to SIGABRT.
func (s *supervisor) stackReceived(c *child, now time.Time, msg contract.Msg) {
	var report contract.AbortReport
	if err := json.Unmarshal([]byte(msg.Text), &report); err != nil {
		report = contract.AbortReport{}
	}
	if c.abortedAt.IsZero() {
		// Someone else sent it SIGABRT; it ends itself now.
		s.log.Warn(entry(fmt.Sprintf("worker %s [%d] received SIGABRT; its event loop goroutine:", c.name(), c.pid), report.Stack))
		return
	}
	if c.stallLabel == "" {
		// The detector is off, or had not reported yet: the worker's own
		// word for what its loop runs.
		c.stallLabel = report.Label
	}
	s.timedOut(c, now, report.Stack, "")
}

// timedOut writes the WORKER TIMEOUT entry, once, and kills c.
func (s *supervisor) timedOut(c *child, now time.Time, stack, noStack string) {
	if c.timeoutLogged {
		return
	}
	c.timeoutLogged = true
	head := fmt.Sprintf("WORKER TIMEOUT (pid:%d) worker %s: event loop blocked for %s (--timeout %v)",
		c.pid, c.name(), seconds(now.Sub(c.stallSince())), s.limits.timeout)
	if c.stallLabel != "" {
		head += " by " + c.stallLabel
	}
	switch {
	case stack != "":
		head += "; killed. Its event loop goroutine:"
	case noStack != "":
		head += "; killed (" + noStack + ")"
	default:
		head += "; killed (its event loop's stack is unknown: it did not answer SIGABRT within " + abortGrace.String() + ")"
	}
	// gunicorn's words first, so existing alerts keep matching; one
	// entry, whatever the log reader: see entry.
	s.log.Error(entry(head, stack))
	s.sigkill(c)
}

// entry is head with body under it, each line indented: the logs package
// writes such an entry to a pipe in one piece, so the other processes'
// lines never cut into it.
func entry(head, body string) string {
	if body == "" {
		return head
	}
	return head + "\n    " + strings.ReplaceAll(body, "\n", "\n    ")
}
