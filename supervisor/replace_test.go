package supervisor

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// load is a bounded client loop against a master: keep-alive clients and
// clients that open a new connection per request.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	ok       int
	failures []error
	byPID    map[string]int
}

func startLoad(url string, keepAlive, fresh int) *load {
	l := &load{stop: make(chan struct{}), byPID: map[string]int{}}
	run := func(c *http.Client, kind string) {
		defer l.wg.Done()
		defer c.CloseIdleConnections()
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			resp, err := c.Get(url + "/")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			l.mu.Lock()
			if err != nil {
				l.failures = append(l.failures, fmt.Errorf("%s client: %w", kind, err))
			} else {
				l.ok++
				l.byPID[string(body)]++
			}
			l.mu.Unlock()
		}
	}
	for i := range keepAlive + fresh {
		kind := "keep-alive"
		if i >= keepAlive {
			kind = "new-connection"
		}
		tr := &http.Transport{DisableKeepAlives: i >= keepAlive, MaxIdleConnsPerHost: 1}
		l.wg.Add(1)
		go run(&http.Client{Timeout: 10 * time.Second, Transport: tr}, kind)
	}
	return l
}

// served returns how many requests succeeded so far.
func (l *load) served() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

// finish stops the clients and waits for them.
func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// waitServed waits until the load got n more answers (a real signal that
// traffic flows), failing after timeout.
func (l *load) waitServed(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	want := l.served() + n
	for deadline := time.Now().Add(timeout); l.served() < want; {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d answers, want %d", l.served(), want)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll of a counter
	}
}

func TestSIGHUPUnderLoadDropsNothing(t *testing.T) {
	t.Parallel()
	m := startMaster(t, 2, 10*time.Second)
	old := m.waitRunning()
	l := startLoad(m.url, 2, 2)
	start := time.Now()
	l.waitServed(t, 200, 10*time.Second)

	// Three rolling restarts in a row, each under the same load: every
	// worker process is replaced three times.
	const rounds = 3
	during := 0
	var took []string
	for round := 1; round <= rounds; round++ {
		before := l.served()
		m.signal(syscall.SIGHUP)
		m.waitFor(`Received SIGHUP, restarting processes\.`, 5*time.Second)
		sub := m.waitFor(`Rolling restart done: 2 worker processes replaced in (\S+)`, 10*time.Second)
		took = append(took, sub[1])
		for _, pid := range old {
			waitGone(t, pid, 5*time.Second)
		}
		during += l.served() - before
		old = map[int]int{}
		for _, s := range m.all(`Started server process \[(\d+)\] \(worker (\d)/2\)`) {
			pid, _ := strconv.Atoi(s[1])
			idx, _ := strconv.Atoi(s[2])
			old[idx] = pid // the last started per index: the current ones
		}
		l.waitServed(t, 200, 10*time.Second)
	}
	// Keep the load on the last workers for a while: the test runs ~2s.
	if rest := 2*time.Second - time.Since(start); rest > 0 {
		time.Sleep(rest) // load duration, not a synchronisation
	}
	l.finish()

	t.Logf("%d rolling restarts of 2 workers took %v (master's count); %d requests served, %d between each SIGHUP and its old workers' exit, %d failed",
		rounds, took, l.ok, during, len(l.failures))
	if len(l.failures) > 0 {
		t.Errorf("%d requests failed during rolling restarts, first: %v", len(l.failures), l.failures[0])
	}
	started := m.all(`Started server process \[(\d+)\] \(worker (\d)/2\)`)
	if len(started) != 2+2*rounds {
		t.Fatalf("%d processes started, want %d", len(started), 2+2*rounds)
	}
	// Each old worker was asked to drain only once its replacement was
	// ready, and drained cleanly; the last generation served.
	for _, s := range started[:2*rounds] {
		m.await(fmt.Sprintf(`ready, replacing \[%s\] \(worker %s/2\)`, s[1], s[2]), time.Second)
		m.await(fmt.Sprintf(`test-worker \[%s\] drained`, s[1]), time.Second)
	}
	for _, s := range started[2*rounds:] {
		if l.byPID[s[1]] == 0 {
			t.Errorf("last replacement %s (worker %s) served nothing", s[1], s[2])
		}
	}
	m.stopCleanly()
}

// writeBehaviour sets what workers spawned from now on do.
func writeBehaviour(t *testing.T, path, b string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A bad deploy: the replacement cannot start. The rolling restart stops and
// the old worker keeps serving; a later SIGHUP with a good version works.
func TestSIGHUPAbortsWhenReplacementFailsToBoot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ behaviour, why string }{
		{"exit3", `exit status 3`},
		{"exit1", `exit status 1`},
		{"hang-boot", `not ready in time`},
	} {
		t.Run(tc.behaviour, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "behaviour")
			writeBehaviour(t, file, "ok")
			env := append(healthEnv(time.Second, 0, 0), envTestBehaviourFile+"="+file)
			m := startMasterEnv(t, env, 2, 5*time.Second)
			old := m.waitRunning()

			writeBehaviour(t, file, tc.behaviour)
			m.signal(syscall.SIGHUP)
			sub := m.waitFor(`Started server process \[(\d+)\] \(worker 1/2\)`, 5*time.Second)
			m.waitFor(fmt.Sprintf(`Child process \[%s\] failed to boot; keeping \[%d\] \(worker 1/2\).*%s`, sub[1], old[1], tc.why), 5*time.Second)
			m.waitFor(`Rolling restart aborted after 0 of 2 workers`, time.Second)
			for idx, pid := range old {
				if state, _, err := procStat(pid); err != nil || state == "Z" {
					t.Errorf("old worker %d [%d] gone (%q, %v)", idx, pid, state, err)
				}
			}
			body, err := get(m.url + "/")
			if err != nil || (body != strconv.Itoa(old[1]) && body != strconv.Itoa(old[2])) {
				t.Errorf("after the aborted restart: %q, %v; want an old worker", body, err)
			}

			writeBehaviour(t, file, "ok")
			m.signal(syscall.SIGHUP)
			m.waitFor(`Rolling restart done: 2 worker processes replaced`, 10*time.Second)
			for _, pid := range old {
				waitGone(t, pid, 5*time.Second)
			}
			m.stopCleanly()
		})
	}
}

func TestSIGTTINAndSIGTTOU(t *testing.T) {
	t.Parallel()
	m := startMaster(t, 1, 5*time.Second)
	first := m.waitRunning()[1]

	m.signal(syscall.SIGTTOU)
	m.waitFor(`Received SIGTTOU, decreasing the number of processes\.`, 5*time.Second)
	m.waitFor(`Already at one worker process; not decreasing further\.`, time.Second)

	m.signal(syscall.SIGTTIN)
	m.waitFor(`Received SIGTTIN, increasing the number of processes\.`, 5*time.Second)
	sub := m.waitFor(`Started server process \[(\d+)\] \(worker 2/2\)`, 5*time.Second)
	second, _ := strconv.Atoi(sub[1])
	m.signal(syscall.SIGTTIN)
	sub = m.waitFor(`Started server process \[(\d+)\] \(worker 3/3\)`, 5*time.Second)
	third, _ := strconv.Atoi(sub[1])
	m.await(fmt.Sprintf(`Child process \[%d\] ready`, third), 5*time.Second)
	// The new worker's argv carries the new total.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", third)); err != nil || string(cmdline) != testWorkerArgv0+"\x00worker\x003/3\x00ok\x00" {
		t.Errorf("third worker cmdline %q, %v", cmdline, err)
	}
	if st := m.snapshot(); len(st) != 3 {
		t.Errorf("snapshot: %+v, want 3 workers", st)
	}

	// The last one added goes first, and drains.
	m.signal(syscall.SIGTTOU)
	m.waitFor(`Received SIGTTOU`, 5*time.Second)
	m.waitFor(fmt.Sprintf(`Stopping child process \[%d\] \(worker 3/3\)`, third), time.Second)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] stopped.*exit status 0`, third), 5*time.Second)
	m.await(fmt.Sprintf(`test-worker \[%d\] drained`, third), time.Second)
	m.signal(syscall.SIGTTOU)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] stopped`, second), 5*time.Second)
	waitGone(t, third, time.Second)
	waitGone(t, second, time.Second)
	if st := m.snapshot(); len(st) != 1 || st[0].pid != first {
		t.Errorf("snapshot: %+v, want only the first worker %d", st, first)
	}
	if body, err := get(m.url + "/"); err != nil || body != strconv.Itoa(first) {
		t.Errorf("after scaling down: %q, %v; want %d", body, err, first)
	}
	if n := m.count(`died`); n != 0 {
		t.Errorf("a retired worker was taken for dead")
	}
	m.stopCleanly()
}

// A worker that served its --limit-max-requests is replaced without any
// request failing, its successor ready before it drains.
func TestRetireRecyclesWithoutFailures(t *testing.T) {
	t.Parallel()
	const limit = 50
	m := startMaster(t, 1, 5*time.Second, fmt.Sprintf("retire=%d", limit))
	first := m.waitRunning()[1]
	l := startLoad(m.url, 1, 1)
	m.waitFor(fmt.Sprintf(`worker 1/1 \[%d\] served %d requests, recycling`, first, limit), 10*time.Second)
	sub := m.waitFor(`Started server process \[(\d+)\] \(worker 1/1\)`, 5*time.Second)
	// The load goes on, so later lines may interleave: search them all.
	m.await(fmt.Sprintf(`Child process \[%s\] ready, replacing \[%d\]`, sub[1], first), 5*time.Second)
	m.await(fmt.Sprintf(`Child process \[%d\] stopped.*exit status 0`, first), 5*time.Second)
	// And the successor recycles in turn.
	m.await(fmt.Sprintf(`worker 1/1 \[%s\] served %d requests, recycling`, sub[1], limit), 10*time.Second)
	m.await(fmt.Sprintf(`Child process \[%s\] stopped`, sub[1]), 5*time.Second)
	l.finish()
	t.Logf("%d requests across %d recycled workers, %d failed", l.ok, len(l.byPID), len(l.failures))
	if len(l.failures) > 0 {
		t.Errorf("%d requests failed while recycling, first: %v", len(l.failures), l.failures[0])
	}
	if n := m.count(`died`); n != 0 {
		t.Errorf("a recycled worker was taken for dead")
	}
	m.stopCleanly()
}

// The respawn policy covers processes that die in the middle of a
// replacement: the serving worker crashes while its successor boots.
func TestServingWorkerDiesWhileSuccessorBoots(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "behaviour")
	writeBehaviour(t, file, "ok")
	m := startMasterEnv(t, []string{envTestBehaviourFile + "=" + file}, 1, 5*time.Second)
	old := m.waitRunning()[1]
	// The successor will hang before ready; kill the serving worker then.
	writeBehaviour(t, file, "hang-boot")
	m.signal(syscall.SIGHUP)
	sub := m.waitFor(`Started server process \[(\d+)\] \(worker 1/1\)`, 5*time.Second)
	m.await(fmt.Sprintf(`test-worker \[%s\] hanging before ready`, sub[1]), 5*time.Second)
	writeBehaviour(t, file, "ok")
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitFor(fmt.Sprintf(`Child process \[%d\] died`, old), 5*time.Second)
	// The booting successor now takes over the slot: no second process
	// is started for it. When it dies too (killed here rather than by the
	// 5s start-up limit), the slot is respawned like after any death.
	if n := m.count(`Started server process`); n != 2 {
		t.Errorf("%d processes started, want 2 (no respawn while the successor boots)", n)
	}
	successor, _ := strconv.Atoi(sub[1])
	if err := syscall.Kill(successor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitFor(fmt.Sprintf(`Child process \[%d\] died`, successor), 5*time.Second)
	m.await(`Rolling restart aborted`, time.Second)
	sub = m.waitFor(`Started server process \[(\d+)\] \(worker 1/1\)`, 5*time.Second)
	if body, err := get(m.url + "/"); err != nil || body != sub[1] {
		t.Errorf("after both died: %q, %v; want the respawned %s", body, err, sub[1])
	}
	m.stopCleanly()
}

// Outside shutdown, a retired worker that does not drain is bounded by
// GracefulTimeout too, and is not replaced.
func TestRetiredWorkerKilledAtDrainDeadline(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	m := startMaster(t, 2, grace, "ok", "ignore-term")
	pids := m.waitRunning()
	m.signal(syscall.SIGTTOU)
	m.waitFor(fmt.Sprintf(`Stopping child process \[%d\] \(worker 2/2\)`, pids[2]), 5*time.Second)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] did not finish draining within 1s, killing it`, pids[2]), 5*time.Second)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] stopped.*signal: killed.*drain timeout`, pids[2]), 5*time.Second)
	if n := m.count(`Started server process`); n != 2 {
		t.Errorf("%d processes started, want 2: a removed worker is not replaced", n)
	}
	m.stopCleanly()
}

// SIGTTIN with a version that cannot start: the new slot is dropped, the
// master keeps serving with what it has.
func TestSIGTTINWithFailingWorker(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "behaviour")
	writeBehaviour(t, file, "ok")
	m := startMasterEnv(t, []string{envTestBehaviourFile + "=" + file}, 1, 5*time.Second)
	first := m.waitRunning()[1]
	writeBehaviour(t, file, "exit3")
	m.signal(syscall.SIGTTIN)
	m.waitFor(`Child process \[\d+\] failed to boot; not adding worker 2/2.*exit status 3`, 5*time.Second)
	m.waitFor(`Staying at 1 worker processes`, time.Second)
	if body, err := get(m.url + "/"); err != nil || body != strconv.Itoa(first) {
		t.Errorf("after the failed SIGTTIN: %q, %v; want %d", body, err, first)
	}
	// The next SIGTTIN, with a good version, gets index 2 again.
	writeBehaviour(t, file, "ok")
	m.signal(syscall.SIGTTIN)
	sub := m.waitFor(`Started server process \[(\d+)\] \(worker 2/2\)`, 5*time.Second)
	m.await(fmt.Sprintf(`Child process \[%s\] ready`, sub[1]), 5*time.Second)
	m.stopCleanly()
}

// A SIGHUP during a rolling restart extends it: the worker the first one
// already replaced is replaced again, the others once.
func TestSecondSIGHUPExtendsRestart(t *testing.T) {
	t.Parallel()
	m := startMaster(t, 2, 5*time.Second)
	m.waitRunning()
	m.signal(syscall.SIGHUP)
	m.waitFor(`Received SIGHUP`, 5*time.Second)
	// The first step has begun: worker 1's replacement is starting.
	m.waitFor(`Started server process \[\d+\] \(worker 1/2\)`, 5*time.Second)
	m.signal(syscall.SIGHUP)
	m.waitFor(`Received SIGHUP`, 5*time.Second)
	sub := m.waitFor(`Rolling restart done: (\d+) worker processes replaced`, 10*time.Second)
	if sub[1] != "3" {
		t.Errorf("%s replacements, want 3 (worker 1 twice, worker 2 once)", sub[1])
	}
	if n := m.count(`Rolling restart done`); n != 1 {
		t.Errorf("%d 'done' lines, want 1", n)
	}
	ready := map[int]bool{}
	for _, w := range m.snapshot() {
		if w.state == "ready" {
			ready[w.index] = true
		}
	}
	if len(ready) != 2 || !ready[1] || !ready[2] {
		t.Errorf("ready workers after: %v, want 1 and 2", ready)
	}
	m.stopCleanly()
}
