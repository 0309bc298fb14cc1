package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"demo/childproc"
)

// BenchmarkIdleWorkers measures what idle workers cost the machine: two
// `demo serve --workers 8` side by side, one with the blocked-loop detector
// on (the default) and one with --slow-callback 0, serving nothing, and the
// CPU time and context switches of every thread of every worker over the
// same window, per worker and second, with the ratio of the two.
//
//	go test ./e2e -run XXX -bench IdleWorkers -benchtime 1x
//
// DEMO_BENCH_WORKERS and DEMO_BENCH_DURATION (default 10s) change the
// workers per server and the window.
func BenchmarkIdleWorkers(b *testing.B) {
	workers, window := 8, 10*time.Second
	if v, err := strconv.Atoi(os.Getenv("DEMO_BENCH_WORKERS")); err == nil && v > 0 {
		workers = v
	}
	if v, err := time.ParseDuration(os.Getenv("DEMO_BENCH_DURATION")); err == nil && v > 0 {
		window = v
	}
	start := func(args ...string) []int {
		args = append([]string{"serve", "--port", "0", "--workers", strconv.Itoa(workers)}, args...)
		c, err := childproc.Start(childproc.Spec{Name: "demo serve", Path: demoBin, Args: args, DrainAfter: serveRunning})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Stop(10 * time.Second) })
		if _, err := c.WaitLine(context.Background(), serveRunning, 0, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		pids, err := childproc.Children(c.PID())
		if err != nil || len(pids) != workers {
			b.Fatalf("workers of %s: %v %v", strings.Join(args, " "), pids, err)
		}
		return pids
	}
	on, off := start(), start("--slow-callback", "0")
	for b.Loop() {
		on0, off0 := threadsUsage(b, on), threadsUsage(b, off)
		time.Sleep(window)
		onUse, offUse := threadsUsage(b, on).minus(on0), threadsUsage(b, off).minus(off0)
		per := float64(workers) * window.Seconds()
		b.ReportMetric(float64(onUse.cpu.Microseconds())/per, "on-µs/worker/s")
		b.ReportMetric(float64(offUse.cpu.Microseconds())/per, "off-µs/worker/s")
		b.ReportMetric(float64(onUse.cpu)/float64(offUse.cpu), "on÷off")
		b.ReportMetric(float64(onUse.switches)/per, "on-switches/worker/s")
		b.ReportMetric(float64(offUse.switches)/per, "off-switches/worker/s")
	}
}

// usage is CPU time and context switches, summed over threads.
type usage struct {
	cpu      time.Duration
	switches int64
}

func (u usage) minus(v usage) usage { return usage{u.cpu - v.cpu, u.switches - v.switches} }

// threadsUsage sums, over every thread of every process of pids, the CPU
// time (schedstat's first field, in nanoseconds) and the voluntary and
// involuntary context switches.
func threadsUsage(b *testing.B, pids []int) usage {
	var u usage
	for _, pid := range pids {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		if err != nil || len(tasks) == 0 {
			b.Fatalf("threads of %d: %v", pid, err)
		}
		for _, task := range tasks {
			sched, err1 := os.ReadFile(task + "/schedstat")
			status, err2 := os.ReadFile(task + "/status")
			if err1 != nil || err2 != nil {
				continue // the thread exited meanwhile
			}
			ns, err := strconv.ParseInt(strings.Fields(string(sched))[0], 10, 64)
			if err != nil {
				b.Fatalf("%s/schedstat: %v", task, err)
			}
			u.cpu += time.Duration(ns)
			for _, line := range strings.Split(string(status), "\n") {
				k, v, _ := strings.Cut(line, ":")
				if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					u.switches += n
				}
			}
		}
	}
	return u
}
