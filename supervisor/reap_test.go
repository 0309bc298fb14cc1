package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"demo/contract"
)

// TestExitsReportedAndReplaced: each way a worker can end — killed, dead
// of a signal it did not choose, exited — reaches the master's log with its
// cause, the way os.ProcessState words it, and its slot gets a new
// worker; so do several exits at once, whose SIGCHLDs the kernel merges.
func TestExitsReportedAndReplaced(t *testing.T) {
	t.Parallel()
	const workers = 4
	m := startMaster(t, workers, 5*time.Second)
	pids := m.waitRunning()
	// replaced waits for the death of pid (any pid: -1) with status, then
	// for its slot's new worker to be ready.
	replaced := func(pid int, status string) {
		t.Helper()
		who := `\d+`
		if pid > 0 {
			who = strconv.Itoa(pid)
		}
		died, at := m.awaitFrom(0, fmt.Sprintf(`Child process \[(%s)\] died\s+\{"worker": "(\d)/%d", "status": "%s"\}$`, who, workers, status), 5*time.Second)
		idx, _ := strconv.Atoi(died[2])
		if old, _ := strconv.Atoi(died[1]); pids[idx] != old {
			t.Fatalf("worker %d/%d [%d] died, but that slot's process is %d", idx, workers, old, pids[idx])
		}
		started, _ := m.awaitFrom(at, fmt.Sprintf(`Started server process \[(\d+)\] \(worker %d/%d\)`, idx, workers), 5*time.Second)
		m.await(fmt.Sprintf(`Child process \[%s\] ready`, started[1]), 5*time.Second)
		pids[idx], _ = strconv.Atoi(started[1])
	}

	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	replaced(pids[1], "signal: killed")
	// The request dies with its worker.
	_, _ = get(m.url + "/die?sig=SEGV")
	replaced(-1, "signal: segmentation fault")
	_, _ = get(m.url + "/die?sig=BUS")
	replaced(-1, "signal: bus error")
	_, _ = get(m.url + "/exit?code=7")
	replaced(-1, "exit status 7")

	before := make(map[int]int, workers)
	for idx, pid := range pids {
		before[idx] = pid
	}
	for _, pid := range before {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range before {
		replaced(pid, "signal: killed")
	}
	for range 2 * workers {
		if _, err := get(m.url + "/"); err != nil {
			t.Fatalf("after the replacements: %v", err)
		}
	}
	m.snapshot()
	crashes := 0
	for _, sl := range m.slots() {
		crashes += sl.restarts["crash"]
	}
	if want := 4 + workers; crashes != want {
		t.Errorf("%d restarts for crashes, want %d", crashes, want)
	}
	m.stopCleanly()
	if n := m.count(`exit status unknown`); n != 0 {
		t.Errorf("%d exits whose status was lost", n)
	}
}

// TestMasterThreadsDoNotGrowWithWorkers: the master waits for no worker on
// a thread of its own (os/exec's Wait would park one per worker).
func TestMasterThreadsDoNotGrowWithWorkers(t *testing.T) {
	const workers = 32
	m := startMaster(t, workers, 5*time.Second)
	m.waitRunning()
	// The runtime's own: a thread per P, sysmon, the spawner's, a few idle.
	if n := threads(t, m.pid); n >= 20 {
		t.Errorf("master has %d threads with %d workers, want fewer than 20", n, workers)
	}
	m.stopCleanly()
}

// threads is the number of threads of process pid.
func threads(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Threads line in /proc/%d/status", pid)
	return 0
}

// BenchmarkRespawn: how long a slot whose worker was killed stays empty —
// from SIGKILL to the replacement's "Started server process" line, and to
// its "ready" line — against the cost of starting a process of this
// binary at all (os.StartProcess, which returns once exec succeeded),
// measured in the same run: what the master adds is noticing the exit.
func BenchmarkRespawn(b *testing.B) {
	const workers = 8
	m := startMaster(b, workers, 5*time.Second)
	pids := m.waitRunning()
	born := map[int]time.Time{}
	for idx := range pids {
		born[idx] = time.Now()
	}
	var started, ready, spawn time.Duration
	b.ResetTimer()
	for i := range b.N {
		idx := i%workers + 1
		// Older than fastDeath, so that no kill counts towards the
		// crash-loop back-off, which would delay the respawn on purpose.
		b.StopTimer()
		time.Sleep(time.Until(born[idx].Add(fastDeath + 100*time.Millisecond)))
		b.StartTimer()
		old := pids[idx]
		killed := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		sub := m.waitFor(fmt.Sprintf(`Started server process \[(\d+)\] \(worker %d/%d\)`, idx, workers), 5*time.Second)
		started += time.Since(killed)
		pid, _ := strconv.Atoi(sub[1])
		m.await(fmt.Sprintf(`Child process \[%d\] ready`, pid), 5*time.Second)
		ready += time.Since(killed)
		pids[idx], born[idx] = pid, time.Now()

		b.StopTimer()
		spawn += timeSpawn(b)
		b.StartTimer()
	}
	b.StopTimer()
	if n := m.count(`Child process \[\d+\] died`); n != b.N {
		b.Errorf("%d deaths logged, want %d", n, b.N)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
	b.ReportMetric(ms(started), "started-ms")
	b.ReportMetric(ms(ready), "ready-ms")
	b.ReportMetric(ms(spawn), "spawn-ms")
	b.ReportMetric(float64(started)/float64(spawn), "started/spawn")
	m.stopCleanly()
}

// timeSpawn is how long os.StartProcess of this test binary takes; the
// process (a worker refusing to start: no master) is then reaped.
func timeSpawn(b *testing.B) time.Duration {
	b.Helper()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	start := time.Now()
	p, err := os.StartProcess(os.Args[0], []string{testWorkerArgv0}, &os.ProcAttr{
		Env:   append(os.Environ(), contract.EnvMasterPID+"=1"),
		Files: []*os.File{devNull, devNull, devNull},
	})
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		b.Fatal(err)
	}
	return took
}

// TestExitOf: the words are os.ProcessState.String's, core dumps included
// (which TestExitsReportedAndReplaced does not make: no core files).
func TestExitOf(t *testing.T) {
	for _, tc := range []struct {
		ws   syscall.WaitStatus // as wait4 fills it
		code int
		desc string
	}{
		{0, 0, "exit status 0"},
		{3 << 8, 3, "exit status 3"},
		{syscall.WaitStatus(syscall.SIGKILL), -1, "signal: killed"},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, -1, "signal: segmentation fault (core dumped)"},
		{syscall.WaitStatus(syscall.SIGABRT) | 0x80, -1, "signal: aborted (core dumped)"},
	} {
		if got := exitOf(tc.ws); got.code != tc.code || got.desc != tc.desc {
			t.Errorf("exitOf(%#x) = %+v, want {code:%d desc:%s}", uint32(tc.ws), got, tc.code, tc.desc)
		}
	}
}
