package supervisor

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestLargeStartRunsTheEventLoop: the master starts a large number of
// workers a batch at a time, handling readiness in between — never more
// than the batch booting at once, so no worker misses its start-up
// deadline for want of CPU — and a signal that arrives mid-start is
// handled at once: the workers not yet started are never started.
func TestLargeStartRunsTheEventLoop(t *testing.T) {
	t.Parallel()
	const workers, batch = 24, 4
	env := append(healthEnv(5*time.Second, 0, 0), envTestStartBatch+"="+strconv.Itoa(batch))

	t.Run("all get ready", func(t *testing.T) {
		t.Parallel()
		m := startMasterEnv(t, env, workers, 5*time.Second, "slow-boot=50ms")
		m.waitRunning()
		m.mu.Lock()
		lines := append([]string(nil), m.lines...)
		m.mu.Unlock()
		started := regexp.MustCompile(`Started server process \[(\d+)\]`)
		ready := regexp.MustCompile(`Child process \[(\d+)\] ready`)
		booting, most, total := 0, 0, 0
		for _, l := range lines {
			switch {
			case started.MatchString(l):
				booting++
				total++
				most = max(most, booting)
			case ready.MatchString(l):
				booting--
			}
		}
		if total != workers || most > batch || most < 2 {
			t.Errorf("%d workers started, at most %d booting at once; want %d, at most %d (and more than one)", total, most, workers, batch)
		}
		if n := m.count(`not ready after`); n != 0 {
			t.Errorf("%d workers killed for booting slowly", n)
		}
		m.stopCleanly()
	})

	t.Run("SIGTERM mid-start", func(t *testing.T) {
		t.Parallel()
		m := startMasterEnv(t, env, workers, 5*time.Second, "slow-boot=300ms")
		m.waitFor(`Started server process`, 5*time.Second)
		sent := time.Now()
		m.signal(syscall.SIGTERM)
		if code := m.waitExit(10 * time.Second); code != 0 {
			t.Errorf("master exit code %d, want 0", code)
		}
		// A handful booting when it came: they drain; no more are started.
		if n := m.count(`Started server process`); n > batch {
			t.Errorf("%d workers started after SIGTERM mid-start, want at most the first batch of %d", n, batch)
		}
		if took := m.exitAt.Sub(sent); took > 3*time.Second {
			t.Errorf("SIGTERM mid-start took %v to stop", took)
		}
		if n := m.count(`running on`); n != 0 {
			t.Errorf("announced running after SIGTERM")
		}
	})
}

// TestMaxWorkers: beyond Config.MaxWorkers Run refuses to start, and
// SIGTTIN stops there.
func TestMaxWorkers(t *testing.T) {
	t.Parallel()
	m := startMasterEnv(t, []string{envTestMaxWorkers + "=2"}, 2, 5*time.Second)
	m.waitRunning()
	m.signal(syscall.SIGTTIN)
	m.waitFor(`Already at 2 worker processes, the most that can share this socket; not increasing further\.`, 5*time.Second)
	if st := m.snapshot(); len(st) != 2 {
		t.Errorf("snapshot: %+v, want 2 workers", st)
	}
	m.stopCleanly()

	over := startMasterEnv(t, []string{envTestMaxWorkers + "=2"}, 3, 5*time.Second)
	if code := over.waitExit(5 * time.Second); code == 0 {
		t.Errorf("3 workers with at most 2: exit code 0")
	}
	over.waitFor(`master error: supervisor: Workers is 3, but at most 2 workers can share this socket`, time.Second)
	if n := over.count(`Started server process`); n != 0 {
		t.Errorf("%d workers started", n)
	}
}

// TestRestartCauses: each reason a slot gets a new process is counted
// under its cause, and the slot's request count survives its processes.
func TestRestartCauses(t *testing.T) {
	t.Parallel()
	m := startMasterEnv(t, healthEnv(time.Second, 2*time.Second, 0), 1, 5*time.Second, "retire=2")
	first := m.waitRunning()[1]
	next := func(prev int) int {
		t.Helper()
		sub := m.waitFor(`Started server process \[(\d+)\] \(worker 1/1\)`, 5*time.Second)
		pid, _ := strconv.Atoi(sub[1])
		m.await(fmt.Sprintf(`Child process \[%d\] ready`, pid), 5*time.Second)
		if pid == prev {
			t.Fatalf("no new process")
		}
		return pid
	}
	for range 2 { // recycle: it served its 2 requests
		if _, err := get(m.url + "/"); err != nil {
			t.Fatal(err)
		}
	}
	pid := next(first)
	// Only the new process may take the next requests.
	m.await(fmt.Sprintf(`Child process \[%d\] stopped`, first), 5*time.Second)
	_, _ = get(m.url + "/exit?code=1") // crash
	pid = next(pid)
	m.signal(syscall.SIGHUP) // reload
	old := pid
	pid = next(pid)
	m.await(fmt.Sprintf(`Child process \[%d\] stopped`, old), 5*time.Second)
	go func() { _, _ = get(m.url + "/block?d=10s") }() // timeout
	m.waitFor(`WORKER TIMEOUT`, 5*time.Second)
	pid = next(pid)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil { // healthcheck
		t.Fatal(err)
	}
	m.waitFor(fmt.Sprintf(`Child process \[%d\] did not answer for 1s, killed`, pid), 5*time.Second)
	next(pid)
	m.snapshot()
	sl := m.slots()
	if len(sl) != 1 {
		t.Fatalf("slots: %+v", sl)
	}
	want := map[string]int{"crash": 1, "timeout": 1, "healthcheck": 1, "recycle": 1, "reload": 1}
	for cause, n := range want {
		if sl[0].restarts[cause] != n {
			t.Errorf("restarts: %v, want %v", sl[0].restarts, want)
			break
		}
	}
	// 2 served by the first process, 1 by the blocked one.
	if sl[0].requests != 3 {
		t.Errorf("slot served %d requests, want 3", sl[0].requests)
	}
	m.stopCleanly()
}
