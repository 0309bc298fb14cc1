package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/contract"
)

func TestJudge(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	lim := healthLimits{healthcheck: 5 * time.Second, timeout: 0, stallEvery: 5 * time.Second}
	withTimeout := lim
	withTimeout.timeout = 3 * time.Second
	s := time.Second
	for _, tc := range []struct {
		name     string
		w        child
		now      time.Duration
		lim      healthLimits
		act      action
		stall    time.Duration
		progress bool
	}{
		{"starting, within limit", child{state: Starting, started: t0, bootFrom: t0}, 5 * s, lim, actNone, 0, false},
		{"starting too long", child{state: Starting, started: t0, bootFrom: t0}, 5*s + 1, lim, actKillBoot, 0, false},
		{"ready, answering", child{state: Ready, readyAt: t0, lastAlive: at(9 * s), lastBeat: at(9 * s)}, 10 * s, lim, actNone, s, false},
		{"ready, never answered, within limit", child{state: Ready, readyAt: t0}, 5 * s, lim, actNone, 0, false},
		{"ready, never answered", child{state: Ready, readyAt: t0}, 5*s + 1, lim, actKillSilent, 0, false},
		{"ready, silent since last answer", child{state: Ready, readyAt: t0, lastAlive: at(2 * s)}, 7*s + 1, lim, actKillSilent, 0, false},
		{"loop stalled, process answers, no timeout", child{state: Ready, readyAt: t0, lastAlive: at(59 * s), lastBeat: at(30 * s)}, 60 * s, lim, actNone, 30 * s, true},
		{"stall at the threshold", child{state: Ready, readyAt: t0, lastAlive: at(10 * s), lastBeat: at(10 * s)}, 10*s + StallThreshold, lim, actNone, StallThreshold, false},
		{"stall reported recently", child{state: Ready, readyAt: t0, lastAlive: at(20 * s), lastBeat: at(10 * s), stallNoted: at(16 * s)}, 20 * s, lim, actNone, 10 * s, false},
		{"stall report due again", child{state: Ready, readyAt: t0, lastAlive: at(21 * s), lastBeat: at(10 * s), stallNoted: at(16 * s)}, 21 * s, lim, actNone, 11 * s, true},
		{"timeout, stalled longer", child{state: Ready, readyAt: t0, lastAlive: at(13 * s), lastBeat: at(10 * s)}, 13*s + 1, withTimeout, actAbort, 3*s + 1, false},
		{"timeout, not yet", child{state: Ready, readyAt: t0, lastAlive: at(13 * s), lastBeat: at(10 * s)}, 13 * s, withTimeout, actNone, 3 * s, false},
		{"timeout, no beat yet: not judged", child{state: Ready, readyAt: t0, lastAlive: at(9 * s)}, 10 * s, withTimeout, actNone, 0, false},
		{"timeout beats silence", child{state: Ready, readyAt: t0, lastBeat: t0}, 9 * s, withTimeout, actAbort, 9 * s, true},
		{"draining and blocked: graceful timeout governs", child{state: Draining, readyAt: t0, lastBeat: t0, drainBy: at(30 * s)}, 29 * s, withTimeout, actNone, 29 * s, true},
		{"draining past its deadline", child{state: Draining, readyAt: t0, drainBy: at(30 * s)}, 30*s + 1, lim, actKillDrain, 0, false},
		{"draining at shutdown: no own deadline", child{state: Draining, readyAt: t0}, 100 * s, lim, actNone, 0, false},
		{"aborted, within grace", child{state: Killed, abortedAt: at(10 * s), lastBeat: t0}, 10*s + abortGrace - 1, withTimeout, actNone, 11*s - 1, false},
		{"aborted, grace over", child{state: Killed, abortedAt: at(10 * s), lastBeat: t0}, 10*s + abortGrace, withTimeout, actKillAborted, 11 * s, false},
		{"killed by healthcheck: nothing more", child{state: Killed, readyAt: t0}, 100 * s, lim, actNone, 0, false},
		{"aborted, stack logged and killed: nothing more", child{state: Killed, abortedAt: at(10 * s), timeoutLogged: true, lastBeat: t0}, 12 * s, withTimeout, actNone, 12 * s, false},
		{"stall timed from the detector's start", child{state: Ready, readyAt: t0, lastAlive: at(20 * s), lastBeat: at(10 * s), stallFrom: at(12 * s)}, 20 * s, withTimeout, actAbort, 8 * s, true},
		{"detector's stall not long enough yet", child{state: Ready, readyAt: t0, lastAlive: at(14 * s), lastBeat: at(10 * s), stallFrom: at(12 * s)}, 14 * s, withTimeout, actNone, 2 * s, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judge(&tc.w, at(tc.now), tc.lim)
			if v.act != tc.act || v.stall != tc.stall || v.progress != tc.progress {
				t.Errorf("judge = {act %d, stall %v, progress %t}, want {act %d, stall %v, progress %t}",
					v.act, v.stall, v.progress, tc.act, tc.stall, tc.progress)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{
		0: 0, 4: 0, 5: 100 * time.Millisecond, 6: 200 * time.Millisecond, 7: 400 * time.Millisecond,
		10: 3200 * time.Millisecond, 11: 5 * time.Second, 40: 5 * time.Second,
	} {
		if got := backoffDelay(n); got != want {
			t.Errorf("backoffDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

// A worker that stopped reading its lifeline, or is gone, must never block
// (or kill with SIGPIPE) the owner goroutine that pings it.
func TestPingNeverBlocks(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Fill the pipe to the brim.
	filled := 0
	_ = rc.Write(func(fd uintptr) bool {
		buf := make([]byte, 4096)
		for {
			n, err := unix.Write(int(fd), buf)
			filled += max(n, 0)
			if err != nil {
				return true
			}
		}
	})
	if filled == 0 {
		t.Fatal("could not fill the pipe")
	}
	p := &execProcess{lifelineW: w}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.ping() // full pipe
		r.Close()
		p.ping() // EPIPE: nobody reads any more
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ping blocked on a full pipe")
	}
}

// healthEnv configures the test master's health limits.
func healthEnv(healthcheck, timeout, stallEvery time.Duration) []string {
	env := []string{envTestHealth + "=" + healthcheck.String()}
	if timeout > 0 {
		env = append(env, envTestTimeout+"="+timeout.String())
	}
	if stallEvery > 0 {
		env = append(env, envTestStallEvery+"="+stallEvery.String())
	}
	return env
}

func TestHealthcheckKillsSilentWorker(t *testing.T) {
	t.Parallel()
	m := startMasterEnv(t, healthEnv(time.Second, 0, 0), 1, 5*time.Second, "no-alive")
	old := m.waitRunning()[1]
	m.waitFor(fmt.Sprintf(`Child process \[%d\] did not answer for 1s, killed`, old), 5*time.Second)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] died.*"worker": "1/1".*signal: killed.*did not answer pings`, old), 5*time.Second)
	sub := m.waitFor(contract.WorkerStartedLine("1/1").String(), 5*time.Second)
	if sub[1] == strconv.Itoa(old) {
		t.Fatalf("no new process")
	}
	m.stopCleanly()
	waitGone(t, old, time.Second)
}

// The point of two signals: a loop blocked past the healthcheck timeout is
// reported (with how long, while and after), the master knows it is stalled,
// but nothing is killed without --timeout. The worker's detector tells the
// start and the total (contract.Stall, StallEnd); the master alone reminds
// that it goes on, and counts it with the detector's figure.
func TestBlockedLoopIsReportedNotKilled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, behaviour string }{{"detector", "ok"}, {"no detector", "no-detector"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := startMasterEnv(t, healthEnv(time.Second, 0, time.Second), 1, 5*time.Second, tc.behaviour)
			pid := m.waitRunning()[1]
			if st := m.snapshot(); len(st) != 1 || st[0].pid != pid || st[0].state != "ready" || st[0].stalled {
				t.Fatalf("snapshot before the block: %+v", st)
			}

			const block = 2500 * time.Millisecond
			res := make(chan error, 1)
			go func() {
				body, err := get(m.url + "/block?d=" + block.String())
				if err == nil && body != fmt.Sprintf("unblocked %d", pid) {
					err = fmt.Errorf("body %q", body)
				}
				res <- err
			}()
			m.waitFor(`loop blocked`, 5*time.Second)
			// The master sees the stall while it lasts (bounded poll: a stall has
			// no event of its own until it ends).
			var st []workerRow
			for deadline := time.Now().Add(5 * time.Second); ; {
				st = m.snapshot()
				if len(st) == 1 && st[0].stalled || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if len(st) != 1 || !st[0].stalled || st[0].stall <= StallThreshold || st[0].pid != pid {
				t.Fatalf("snapshot during the block: %+v, want worker %d stalled", st, pid)
			}
			if st[0].sinceAlv > time.Second {
				t.Errorf("process stopped answering pings while only its loop was blocked: %+v", st[0])
			}
			// The counters come with the Alive answers: the blocking request
			// is in flight on the one connection it came on.
			if st[0].inFlight != 1 || st[0].conns != 1 || st[0].requests != 1 {
				t.Errorf("snapshot during the block: %d requests, %d in flight, %d connections; want 1, 1, 1", st[0].requests, st[0].inFlight, st[0].conns)
			}
			if sl := m.slots(); len(sl) != 1 || sl[0].blocked != st[0].stall {
				t.Errorf("slot snapshot during the block: %+v, want it blocked for %v", sl, st[0].stall)
			}
			by := ""
			if tc.behaviour == "ok" {
				// Nothing after the label but the fields for tools, which
				// this test master's development logger shows after a tab.
				by = ` by GET /block \(request test\)(\t|$)`
			}
			m.waitFor(contract.WorkerStallingLine("1/1", pid).String()+by, 5*time.Second)
			if err := <-res; err != nil {
				t.Fatalf("blocked request: %v", err)
			}
			if tc.behaviour == "no-detector" {
				sub := m.waitFor(`WARN.*`+contract.WorkerStallLine("1/1", pid).String(), 5*time.Second)
				took, _ := strconv.ParseFloat(sub[3], 64)
				if took < block.Seconds()-0.1 || took > block.Seconds()+1.5 {
					t.Errorf("reported a %vs block, want about %v", took, block)
				}
			}
			// Heartbeats resume; the stall is over and counted once.
			for deadline := time.Now().Add(5 * time.Second); ; {
				if st = m.snapshot(); len(st) == 1 && !st[0].stalled || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			sl := m.slots()
			if len(sl) != 1 || sl[0].stalls != 1 || sl[0].blocked != 0 || sl[0].requests != 1 {
				t.Fatalf("slot snapshot after the block: %+v, want one stall counted, not blocked now, 1 request", sl)
			}
			if tc.behaviour == "ok" && (sl[0].stallSum < block || sl[0].stallSum > block+100*time.Millisecond) {
				t.Errorf("stall counted as %v, want the detector's own figure, just over %v", sl[0].stallSum, block)
			}
			ended := 1
			if tc.behaviour == "ok" {
				ended = 0 // the worker logs the total, not the master
			}
			if n := m.count(contract.WorkerStallLine("", 0).String()); n != ended {
				t.Errorf("%d end-of-stall warnings from the master, want %d", n, ended)
			}
			if n := m.count(contract.WorkerStallingLine("", 0).String()); n < 1 || n > 3 {
				t.Errorf("%d progress warnings for a %v block every 1s, want 1-3", n, block)
			}
			if body, err := get(m.url + "/"); err != nil || body != strconv.Itoa(pid) {
				t.Errorf("after the block: %q, %v; want the same worker %d", body, err, pid)
			}
			for _, re := range []string{`did not answer`, `died`, `WORKER TIMEOUT`, `killed`} {
				if m.count(re) != 0 {
					t.Errorf("unexpected %q in the log", re)
				}
			}
			m.stopCleanly()
		})
	}
}

// TestTimeoutAbortsStalledWorker: past --timeout the master asks the worker
// for its loop's stack (SIGABRT) and writes one WORKER TIMEOUT entry with
// it, then kills it; a worker that does not answer is killed after
// abortGrace, the entry saying so.
func TestTimeoutAbortsStalledWorker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		behaviour string
		tail      string // how the entry's first line ends
	}{
		{"ok", `; killed\. Its event loop goroutine:$`},
		{"ignore-abort", `; killed \(its event loop's stack is unknown: it did not answer SIGABRT within 1s\)$`},
	} {
		t.Run(tc.behaviour, func(t *testing.T) {
			t.Parallel()
			const timeout = time.Second
			m := startMasterEnv(t, healthEnv(5*time.Second, timeout, 0), 1, 5*time.Second, tc.behaviour)
			pid := m.waitRunning()[1]
			res := make(chan error, 1)
			go func() {
				_, err := get(m.url + "/block?d=20s")
				res <- err
			}()
			m.waitFor(`loop blocked`, 5*time.Second)
			blocked := time.Now()
			sub := m.waitFor(fmt.Sprintf(`ERROR.*WORKER TIMEOUT \(pid:%d\) worker 1/1: event loop blocked for (\d+\.\d)s \(--timeout 1s\) by GET /block \(request test\)%s`, pid, tc.tail), 5*time.Second)
			if d := time.Since(blocked); d < timeout-heartbeatSlack {
				t.Errorf("aborted %v after the block began, before the %v timeout", d, timeout)
			}
			if took, _ := strconv.ParseFloat(sub[1], 64); took < timeout.Seconds() || took > timeout.Seconds()+2.5 {
				t.Errorf("entry says blocked for %ss, want just over the %v timeout", sub[1], timeout)
			}
			if tc.behaviour == "ok" {
				// The stack the worker sent, under the entry's first line,
				// indented, whole.
				at := m.next
				m.waitFor(`^    goroutine 1 \[sleep\]:$`, time.Second)
				if m.next != at+1 {
					t.Errorf("the stack does not follow the WORKER TIMEOUT line")
				}
				m.waitFor(`^    … 3 frames: the event loop and what started it$`, time.Second)
			}
			m.waitFor(fmt.Sprintf(`Child process \[%d\] died.*signal: killed.*worker timeout`, pid), 5*time.Second)
			sub = m.waitFor(contract.WorkerStartedLine("1/1").String(), 5*time.Second)
			if err := <-res; err == nil {
				t.Errorf("the request on the aborted worker succeeded")
			}
			if body, err := get(m.url + "/"); err != nil || body != sub[1] {
				t.Errorf("after the abort: %q, %v; want the replacement %s", body, err, sub[1])
			}
			if n := m.count(`WORKER TIMEOUT`); n != 1 {
				t.Errorf("%d WORKER TIMEOUT entries, want 1", n)
			}
			m.snapshot()
			if sl := m.slots(); len(sl) != 1 || sl[0].restarts["timeout"] != 1 || sl[0].restarts["crash"] != 0 {
				t.Errorf("slot snapshot: %+v, want one restart for a timeout", sl)
			}
			m.stopCleanly()
		})
	}
}

// heartbeatSlack: the master checks stalls once per heartbeat, and
// the beat before the block may have come up to one interval earlier.
const heartbeatSlack = 600 * time.Millisecond

// A draining worker whose loop is blocked is governed by the graceful
// timeout, not by --timeout: its in-flight request completes.
func TestTimeoutSparesDrainingWorker(t *testing.T) {
	t.Parallel()
	m := startMasterEnv(t, healthEnv(time.Second, time.Second, 0), 1, 10*time.Second)
	pid := m.waitRunning()[1]
	res := make(chan error, 1)
	go func() {
		body, err := get(m.url + "/block?d=2500ms")
		if err == nil && body != fmt.Sprintf("unblocked %d", pid) {
			err = errors.New("body " + body)
		}
		res <- err
	}()
	m.waitFor(`loop blocked`, 5*time.Second)
	m.signal(syscall.SIGTERM)
	if err := <-res; err != nil {
		t.Errorf("in-flight request on a draining, blocked worker: %v", err)
	}
	if code := m.waitExit(10 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	m.waitFor(fmt.Sprintf(`test-worker \[%d\] drained`, pid), time.Second)
	for _, re := range []string{`WORKER TIMEOUT`, `did not answer`, `Killing`} {
		if m.count(re) != 0 {
			t.Errorf("unexpected %q in the log", re)
		}
	}
}

// TestSIGABRTFromOutside: someone else sends a worker SIGABRT (kill -ABRT,
// as one would to see where a Go process is): the master logs the loop's
// stack as one entry, and the worker, which ends itself, is replaced as
// any crashed worker is.
func TestSIGABRTFromOutside(t *testing.T) {
	t.Parallel()
	m := startMaster(t, 1, 5*time.Second)
	pid := m.waitRunning()[1]
	if err := syscall.Kill(pid, syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	m.waitFor(fmt.Sprintf(`WARN.*worker 1/1 \[%d\] received SIGABRT; its event loop goroutine:$`, pid), 5*time.Second)
	m.waitFor(`^    goroutine 1 \[sleep\]:$`, time.Second)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] died.*signal: killed`, pid), 5*time.Second)
	m.waitFor(contract.WorkerStartedLine("1/1").String(), 5*time.Second)
	if n := m.count(`WORKER TIMEOUT`); n != 0 {
		t.Errorf("a WORKER TIMEOUT for a SIGABRT the master did not send")
	}
	m.snapshot()
	if sl := m.slots(); len(sl) != 1 || sl[0].restarts["crash"] != 1 {
		t.Errorf("slot snapshot: %+v, want one restart for a crash", sl)
	}
	m.stopCleanly()
}
