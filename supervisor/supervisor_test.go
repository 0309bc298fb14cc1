package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/sockets"
)

func TestWorkersStartAndServe(t *testing.T) {
	m := startMaster(t, 2, 5*time.Second)
	m.waitFor(fmt.Sprintf(`Started parent process \[%d\]`, m.pid), 10*time.Second)
	pids := m.waitRunning()
	if len(pids) != 2 || pids[1] == 0 || pids[2] == 0 || pids[1] == pids[2] {
		t.Fatalf("want two distinct workers 1/2 and 2/2, got %v", pids)
	}
	for idx, pid := range pids {
		_, ppid, err := procStat(pid)
		if err != nil || ppid != m.pid {
			t.Errorf("worker %d [%d]: parent %d (%v), want the master %d", idx, pid, ppid, err, m.pid)
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		want := fmt.Sprintf("%s\x00worker\x00%d/2\x00ok\x00", testWorkerArgv0, idx)
		if err != nil || string(cmdline) != want {
			t.Errorf("worker %d cmdline %q (%v), want %q", idx, cmdline, err, want)
		}
	}
	// Each worker inherited exactly stdio plus the three contract fds:
	// nothing of the master's, nothing of the other worker's pipes.
	fdLines := m.all(`test-worker \[(\d+)\] fds: (.*)`)
	if len(fdLines) != 2 {
		t.Fatalf("want 2 fd reports, got %d", len(fdLines))
	}
	for _, l := range fdLines {
		if l[2] != "0 1 2 3 4 5" {
			t.Errorf("worker %s inherited fds %q, want 0 1 2 3 4 5", l[1], l[2])
		}
	}

	// Both serve from the one socket: freeze all but one worker and the
	// kernel must hand the connection to that one.
	for idx, pid := range pids {
		other := pids[3-idx]
		if err := syscall.Kill(other, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, other)
		body, err := get(m.url + "/")
		if err := syscall.Kill(other, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if err != nil || body != strconv.Itoa(pid) {
			t.Errorf("with only worker %d running: got %q, %v; want its pid %d", idx, body, err, pid)
		}
	}

	m.stopCleanly()
	for _, pid := range pids {
		waitGone(t, pid, time.Second)
	}
}

func TestSIGTERMFinishesInFlightRequest(t *testing.T) {
	m := startMaster(t, 1, 10*time.Second)
	pid := m.waitRunning()[1]

	const slow = 700 * time.Millisecond
	type result struct {
		body string
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		body, err := get(m.url + "/slow?d=" + slow.String())
		done <- result{body, err, time.Since(start)}
	}()
	m.waitFor(`slow request started`, 10*time.Second)
	m.signal(syscall.SIGTERM)
	m.waitFor(`Shutting down`, 5*time.Second)
	m.waitFor(fmt.Sprintf(`Waiting for child process \[%d\]`, pid), 5*time.Second)

	res := <-done
	if want := fmt.Sprintf("done %d", pid); res.err != nil || res.body != want {
		t.Errorf("in-flight request: %q, %v; want %q", res.body, res.err, want)
	}
	if res.took < slow {
		t.Errorf("request took %v, less than its %v of work", res.took, slow)
	}
	if code := m.waitExit(10 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	m.waitFor(fmt.Sprintf(`test-worker \[%d\] drained`, pid), time.Second)
	m.waitFor(fmt.Sprintf(`Stopping parent process \[%d\]`, m.pid), time.Second)
	waitGone(t, pid, time.Second)
	// The master closed its copy of the socket and the worker its own.
	if _, err := get(m.url + "/"); err == nil {
		t.Errorf("a request succeeded after shutdown")
	}
}

func TestGracefulTimeoutKillsStuckWorker(t *testing.T) {
	const grace = 400 * time.Millisecond
	m := startMaster(t, 1, grace, "ignore-term")
	pid := m.waitRunning()[1]

	sent := time.Now()
	m.signal(syscall.SIGTERM)
	if code := m.waitExit(grace + 10*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0 (the timeout is policy, not failure)", code)
	}
	took := m.exitAt.Sub(sent)
	if took < grace || took > grace+3*time.Second {
		t.Errorf("master exited %v after SIGTERM, want just over the %v graceful timeout", took, grace)
	}
	m.waitFor(`Graceful shutdown timed out after 400ms`, time.Second)
	m.waitFor(fmt.Sprintf(`Killing child process \[%d\]`, pid), time.Second)
	m.waitFor(fmt.Sprintf(`Child process \[%d\] stopped.*signal: killed`, pid), time.Second)
	waitGone(t, pid, time.Second)
}

// TestRepeatedSIGTERMKeepsDraining: timeout(1), systemd or a script may
// send SIGTERM again; in-flight requests still finish (Uvicorn forces only
// on a second Ctrl+C). The master says it keeps draining.
func TestRepeatedSIGTERMKeepsDraining(t *testing.T) {
	t.Parallel()
	m := startMaster(t, 1, 10*time.Second)
	pid := m.waitRunning()[1]
	done := make(chan error, 1)
	go func() {
		body, err := get(m.url + "/slow?d=1s")
		if err == nil && body != fmt.Sprintf("done %d", pid) {
			err = fmt.Errorf("body %q", body)
		}
		done <- err
	}()
	m.waitFor(`slow request started`, 10*time.Second)
	m.signal(syscall.SIGTERM)
	m.waitFor(`Shutting down.*received SIGTERM`, 5*time.Second)
	m.signal(syscall.SIGTERM)
	m.waitFor(`Received SIGTERM again: still draining \(1 child process, up to \d+\.\ds left\); SIGINT or SIGQUIT stops them at once`, 5*time.Second)
	m.signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("in-flight request after three SIGTERMs: %v", err)
	}
	if code := m.waitExit(10 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	m.waitFor(fmt.Sprintf(`test-worker \[%d\] drained`, pid), time.Second)
	if n := m.count(`Killing child process`); n != 0 {
		t.Errorf("%d workers killed, want none", n)
	}
}

// TestSIGINTDuringShutdownForcesExit: Ctrl+C twice, or Ctrl+C after a
// SIGTERM, kills the workers at once and the master exits non-zero.
func TestSIGINTDuringShutdownForcesExit(t *testing.T) {
	t.Parallel()
	for _, first := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(unix.SignalName(first), func(t *testing.T) {
			t.Parallel()
			const grace = 20 * time.Second
			m := startMaster(t, 2, grace, "ignore-term")
			pids := m.waitRunning()

			m.signal(first)
			m.waitFor(`Shutting down.*received `+unix.SignalName(first), 5*time.Second)
			sent := time.Now()
			m.signal(syscall.SIGINT)
			if code := m.waitExit(grace / 2); code == 0 {
				t.Errorf("master exit code 0 after a forced shutdown, want non-zero")
			}
			if took := m.exitAt.Sub(sent); took > 3*time.Second {
				t.Errorf("forced shutdown took %v", took)
			}
			m.waitFor(`Received SIGINT during graceful shutdown: killing child processes`, time.Second)
			m.waitFor(`master error: forced shutdown: SIGINT during graceful shutdown`, time.Second)
			for _, pid := range pids {
				waitGone(t, pid, time.Second)
			}
		})
	}
}

func TestSIGQUITKillsWithoutDraining(t *testing.T) {
	m := startMaster(t, 1, 20*time.Second)
	pid := m.waitRunning()[1]
	failed := make(chan error, 1)
	go func() {
		_, err := get(m.url + "/slow?d=5s")
		failed <- err
	}()
	m.waitFor(`slow request started`, 10*time.Second)
	sent := time.Now()
	m.signal(syscall.SIGQUIT)
	if code := m.waitExit(10 * time.Second); code == 0 {
		t.Errorf("master exit code 0 after SIGQUIT, want non-zero")
	}
	if took := m.exitAt.Sub(sent); took > 3*time.Second {
		t.Errorf("SIGQUIT shutdown took %v", took)
	}
	if err := <-failed; err == nil {
		t.Errorf("in-flight request succeeded although its worker was killed")
	}
	m.waitFor(`master error: quit on SIGQUIT`, time.Second)
	waitGone(t, pid, time.Second)
}

func TestKilledWorkerIsReplaced(t *testing.T) {
	m := startMaster(t, 1, 5*time.Second)
	old := m.waitRunning()[1]
	if body, err := get(m.url + "/"); err != nil || body != strconv.Itoa(old) {
		t.Fatalf("before: got %q, %v; want %d", body, err, old)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitFor(fmt.Sprintf(`Child process \[%d\] died.*"worker": "1/1".*signal: killed`, old), 5*time.Second)
	sub := m.waitFor(`Started server process \[(\d+)\] \(worker 1/1\)`, 5*time.Second)
	replacement, _ := strconv.Atoi(sub[1])
	if replacement == old {
		t.Fatalf("replacement has the old pid %d", old)
	}
	// The socket outlived the dead worker: this connection waits in the
	// backlog until the replacement accepts it.
	if body, err := get(m.url + "/"); err != nil || body != strconv.Itoa(replacement) {
		t.Errorf("after: got %q, %v; want the replacement %d", body, err, replacement)
	}
	m.stopCleanly()
}

func TestCrashLoopBacksOff(t *testing.T) {
	m := startMaster(t, 1, 5*time.Second, "crash-after-ready")
	m.waitRunning()
	// Compare the master's own timestamps: when the test reads a line says
	// little on a loaded machine.
	const stamp = `^(\S+)\s+WARN\s.*`
	fifth := m.waitFor(stamp+`Worker 1/1 died within 1s of starting 5 times in a row; restarting it in 100ms`, 10*time.Second)
	m.waitFor(`Started server process`, 5*time.Second)
	sixth := m.waitFor(stamp+`Worker 1/1 died within 1s of starting 6 times in a row; restarting it in 200ms`, 5*time.Second)
	if gap := logTime(t, sixth[1]).Sub(logTime(t, fifth[1])); gap < 99*time.Millisecond {
		t.Errorf("next death came %v after a 100ms backoff was announced", gap)
	}
	m.waitFor(`restarting it in 400ms`, 5*time.Second)
	if died := m.all(`Child process \[\d+\] died`); len(died) < 7 {
		t.Errorf("want at least 7 deaths logged, got %d", len(died))
	}
	// SIGTERM while a restart is pending: nothing left to drain.
	m.signal(syscall.SIGTERM)
	if code := m.waitExit(5 * time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
}

// logTime parses the timestamp zap's development encoder writes.
func logTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestStartupFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		workers    int
		behaviours string
		wantErr    string
	}{
		{"exit3", 1, "exit3", `worker 1/1 \[\d+\] could not start \(exit status 3\)`},
		{"exit1 before ready", 1, "exit1", `worker 1/1 \[\d+\] exited during start-up: exit status 1`},
		{"one of two exits 3", 2, "ok,exit3", `worker 2/2 \[\d+\] could not start \(exit status 3\)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMaster(t, tc.workers, 5*time.Second, strings.Split(tc.behaviours, ",")...)
			if code := m.waitExit(10 * time.Second); code == 0 {
				t.Errorf("master exit code 0, want non-zero")
			}
			m.waitFor(`master error: `+tc.wantErr, time.Second)
			if ran := m.all(`running on`); len(ran) != 0 {
				t.Errorf("announced %q although start-up failed", ran[0][0])
			}
			for _, s := range m.all(`Started server process \[(\d+)\]`) {
				pid, _ := strconv.Atoi(s[1])
				waitGone(t, pid, time.Second)
			}
		})
	}
}

func TestExit3AfterReadyStopsEverything(t *testing.T) {
	m := startMaster(t, 2, 5*time.Second)
	pids := m.waitRunning()
	// Whichever worker takes it exits 3; the request itself fails.
	_, _ = get(m.url + "/exit?code=3")
	if code := m.waitExit(10 * time.Second); code == 0 {
		t.Errorf("master exit code 0, want non-zero")
	}
	m.waitFor(`master error: worker [12]/2 \[\d+\] could not start \(exit status 3\)`, time.Second)
	if died := m.all(`Child process \[\d+\] died`); len(died) != 0 {
		t.Errorf("exit 3 was treated as a crash to respawn: %q", died[0][0])
	}
	for _, pid := range pids {
		waitGone(t, pid, time.Second)
	}
}

func TestWorkersDieWithKilledMaster(t *testing.T) {
	// Worker 2 ignores its lifeline, so only Pdeathsig can take it down.
	m := startMaster(t, 2, 5*time.Second, "ok", "no-lifeline")
	pids := m.waitRunning()
	m.signal(syscall.SIGKILL)
	m.waitExit(5 * time.Second)
	start := time.Now()
	for _, pid := range pids {
		waitGone(t, pid, time.Second)
	}
	t.Logf("workers gone %v after the master was reaped", time.Since(start))
}

// Workers must survive the master's runtime retiring OS threads: they are all
// forked from one thread that lives as long as Run.
func TestWorkersSurviveThreadChurn(t *testing.T) {
	m := startMasterEnv(t, []string{envTestChurn + "=1"}, 2, 5*time.Second)
	pids := m.waitRunning()
	if len(m.all(`churned \d+ threads`)) == 0 { // it may come before "running on"
		m.waitFor(`churned \d+ threads`, 10*time.Second)
	}
	if died := m.all(`Child process \[\d+\] died`); len(died) != 0 {
		t.Errorf("a worker died while threads were retired: %q", died[0][0])
	}
	for idx, pid := range pids {
		if state, _, err := procStat(pid); err != nil || state == "Z" {
			t.Errorf("worker %d [%d] gone (%q, %v)", idx, pid, state, err)
		}
	}
	m.stopCleanly()
}

func TestRunConfigErrors(t *testing.T) {
	args := func(int, int) []string { return []string{"x"} }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listener", Config{Workers: 1, WorkerArgs: args}, "no listener"},
		{"no workers", Config{Workers: 0, WorkerArgs: args, HealthcheckTimeout: time.Second}, "Workers must be at least 1, got 0"},
		{"no argv", Config{Workers: 1}, "no WorkerArgs"},
		{"reuse-port with a listener", Config{Workers: 1, WorkerArgs: args, ReusePort: true}, "Listener must be nil"},
		{"negative timeout", Config{Workers: 1, WorkerArgs: args, HealthcheckTimeout: time.Second, Timeout: -time.Second}, "Timeout must be 0 (off) or more"},
		{"negative grace", Config{Workers: 1, WorkerArgs: args, HealthcheckTimeout: time.Second, GracefulTimeout: -time.Second}, "GracefulTimeout must be 0 (no grace) or more"},
		{"no healthcheck timeout", Config{Workers: 1, WorkerArgs: args}, "HealthcheckTimeout must be positive, got 0s"},
		{"missing executable", Config{Workers: 1, WorkerArgs: args, HealthcheckTimeout: time.Second, Executable: "/nonexistent/demo"}, "start worker 1/1: fork/exec /nonexistent/demo: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no listener" {
				ln, _, err := sockets.ListenTCP("127.0.0.1", 0, 8)
				if err != nil {
					t.Fatal(err)
				}
				tc.cfg.Listener = ln
			}
			err := Run(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.want)
			}
			if tc.cfg.Listener != nil {
				if cerr := tc.cfg.Listener.Close(); cerr == nil {
					t.Errorf("Run left the listener open")
				}
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Starting: "starting", Ready: "ready", Draining: "draining", Killed: "killed", Exited: "exited", 9: "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

// waitStopped waits until every thread of pid is in job-control stop: kill
// returns as soon as SIGSTOP is queued, and a thread still running could
// accept a connection meant for the other worker.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		stopped := true
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			if state, _, err := procStat(tid); err == nil && state != "T" && state != "t" {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not stop", pid)
		}
		time.Sleep(time.Millisecond) // bounded poll: stopping has no notification for a non-child
	}
}

func TestInspectorAfterRunReturned(t *testing.T) {
	in := NewInspector()
	if err := Run(Config{Workers: 1, Inspector: in}); err == nil {
		t.Fatal("Run without a listener succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := in.Workers(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Workers after Run returned: %v, want ErrNotRunning", err)
	}
}
