package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"demo/contract"
	"demo/eventloop"
)

// What the app does for the process around its requests: drain on
// SIGTERM, beat from the loop, ask to be recycled, and report what the
// blocked-loop detector sees.

// drain stops accepting and lets in-flight requests finish; the loop stops
// once the last connection is gone. An owned SO_REUSEPORT socket closes
// right away (Shutdown has accepted what was queued on it), so the kernel
// sends new connections to the other workers' sockets instead.
func (a *app) drain(srv *eventloop.Server) {
	if a.draining {
		return
	}
	a.draining = true
	st := srv.Stats()
	srv.Shutdown(a.loop.Stop)
	if a.listener != nil {
		a.listener.close()
	}
	a.log.Info(fmt.Sprintf("Shutting down (%d connections, %d requests in flight)", st.Conns, st.InFlight))
}

// heartbeat sends Beat from the loop goroutine and re-arms itself, so the
// beats stop exactly while the loop is blocked: that silence is what the
// master measures. It also retries a Retire the pipe had no room for.
func (a *app) heartbeat() {
	a.sendRetire()
	a.beat()
	a.loop.AfterFunc(contract.HeartbeatInterval, a.heartbeat)
}

// beat sends one Beat with the loop's stats; once more after the loop
// stopped, so the master counts every request this process served.
func (a *app) beat() {
	err := a.status.send(contract.Msg{Kind: contract.Beat, Value: time.Now().UnixNano(), Text: a.loopStats()})
	if err != nil && !errors.Is(err, errPipeFull) { // a full pipe: skip this beat, never wait
		a.log.Debug("heartbeat", zap.Error(err))
	}
}

// countRequest counts a request that reached the app and, at
// --limit-max-requests, asks the master for a replacement once. Unlike
// uvicorn, which stops accepting at once, the worker keeps serving until the
// master, with the replacement ready, sends SIGTERM: no request is refused.
func (a *app) countRequest() {
	a.served++
	// The handler may block the loop from here on: publish the counters,
	// this request included, for the Alive answers meanwhile.
	a.publishCounts()
	if a.cfg.MaxRequests > 0 && a.served == a.cfg.MaxRequests && !a.draining {
		a.log.Info(fmt.Sprintf("Maximum request limit of %d reached; asking the master for a replacement", a.cfg.MaxRequests))
		a.retirePending = true
		a.sendRetire()
	}
}

func (a *app) sendRetire() {
	if !a.retirePending || a.draining {
		return
	}
	err := a.status.send(contract.Msg{Kind: contract.Retire, Value: int64(a.served)})
	if errors.Is(err, errPipeFull) {
		return // the next heartbeat tries again: this one must not be lost
	}
	a.retirePending = false
	if err != nil {
		a.log.Warn("could not ask the master for a replacement", zap.Error(err))
	}
}

// publishCounts publishes the loop's counters for the lifeline goroutine.
func (a *app) publishCounts() contract.LoopStats {
	var st eventloop.ServerStats
	if a.srv != nil {
		st = a.srv.Stats()
	}
	return a.live.publish(uint64(a.served), st)
}

// loopStats is the JSON that rides on each Beat.
func (a *app) loopStats() string {
	st := a.publishCounts()
	if a.cfg.LogDrops != nil {
		st.LogLinesDropped = a.cfg.LogDrops.Dropped()
	}
	a.stallMu.Lock()
	st.LongestStall, st.Culprit = a.longestStall, a.longestBy
	a.stallMu.Unlock()
	b, _ := json.Marshal(st)
	return string(b)
}

// reportStall logs what the blocked-loop detector sees: a warning as soon as
// a callback passes --slow-callback (the loop is still blocked: it names the
// request, the step of its route and the call it is stuck in), and the
// total once it ends. Both go to the master too, which reminds of a long
// stall meanwhile.
//
// The step comes from a.step, which the loop sets around every step it
// runs itself; a stall can span several steps of one request (two blocking
// calls in a row), so the total names the request only.
func (a *app) reportStall(s eventloop.Stall) {
	label := s.Label
	if label == "" {
		label = "a loop callback"
	}
	step := ""
	if p := a.step.Load(); p != nil {
		step = *p
	}
	a.stallMu.Lock()
	defer a.stallMu.Unlock()
	// The loop is (or was) blocked: say so now, not when the logger's
	// timer next fires.
	defer a.log.Sync() //nolint:errcheck
	switch {
	case s.Done:
		a.log.Warn(contract.StallMsg(s.Duration, label), contract.StallFields(contract.EventStall, a.name, s.Duration, label, a.culpritStep, ""))
		// The master counts the stall with this same figure.
		_ = a.status.send(contract.Msg{Kind: contract.StallEnd, Value: int64(s.Duration), Text: label})
		if s.Duration > a.longestStall {
			a.longestStall, a.longestBy = s.Duration, label
			if a.culprit != "" {
				a.longestBy += " at " + a.culprit
			}
		}
		a.culprit, a.culpritStep = "", ""
	case s.Culprit != "":
		// "at routes./x steps[2] sleep blocking: worker.(*app).serve → … → time.Sleep"
		a.culprit, a.culpritStep = s.Culprit, step
		if step != "" {
			a.culprit = step + ": " + s.Culprit
		}
		a.log.Warn(contract.StallingMsg(s.Duration, label, a.culprit), contract.StallFields(contract.EventStalling, a.name, s.Duration, label, step, s.Culprit))
		// The loop cannot beat now; tell the master what holds it.
		_ = a.status.send(contract.Msg{Kind: contract.Stall, Value: int64(s.Duration), Text: label + " at " + a.culprit})
	default:
		// Still blocked: the master says so every few seconds (it knows
		// the stall even with the detector off), so not the worker too.
	}
}
