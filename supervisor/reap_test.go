package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"demo/contract"
)

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
