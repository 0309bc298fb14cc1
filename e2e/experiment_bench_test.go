package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
)

// BenchmarkOpenLoopGenerator measures `demo experiment`'s load generator
// where the issue sets the bar: 1,000 requests a second, open loop, with
// about 5,000 in flight at once (each request takes 5 s: two 2.5 s calls
// of an async worker to `demo external`). It runs the real command against
// a `demo serve --mode async --workers 2` started here, as a --target, and
// reads every request's scheduled and actual send time from its --json.
//
//	go test -run XXX -bench OpenLoopGenerator -benchtime 1x
//
// Reported: the achieved rate over the asked one (1.0 when the generator
// kept up), how late requests left (p50/p99/max) beside the baseline of how
// late a bare 1 ms timer in another process woke up meanwhile (the
// machine's own scheduling noise), the most in flight, the requests that
// failed, and the experiment process's own CPU (as a share of one core)
// and peak memory. DEMO_BENCH_RATE and DEMO_BENCH_DURATION
// change the load.
func BenchmarkOpenLoopGenerator(b *testing.B) {
	rate, duration, path := 1000.0, 10*time.Second, "/all-async"
	if v, err := strconv.ParseFloat(os.Getenv("DEMO_BENCH_RATE"), 64); err == nil {
		rate = v
	}
	if v, err := time.ParseDuration(os.Getenv("DEMO_BENCH_DURATION")); err == nil {
		duration = v
	}
	if v := os.Getenv("DEMO_BENCH_PATH"); v != "" {
		path = v
	}
	start := func(name string, re *regexp.Regexp, args ...string) string {
		c, err := childproc.Start(childproc.Spec{Name: name, Path: demoBin, Args: args, DrainAfter: re})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Stop(10 * time.Second) })
		m, err := c.WaitLine(context.Background(), re, 0, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		return m.Groups[1]
	}
	ext := start("demo external", externalRunning, "external", "--port", "0", "--delay", "2500ms")
	url := start("demo serve", serveRunning, "serve", "--port", "0", "--mode", "async", "--workers", "2",
		"--external", ext, "--no-access-log")

	for range b.N {
		// The baseline, measured meanwhile in this process: how late a
		// timer that does nothing else wakes up on this machine right now.
		// A shared 2-core box preempts everyone now and then; the
		// generator's lag is only its own beyond that.
		noiseDone := make(chan struct{})
		noise := make(chan []float64, 1)
		go func() {
			var late []float64
			for {
				select {
				case <-noiseDone:
					noise <- late
					return
				default:
				}
				t := time.Now()
				time.Sleep(time.Millisecond)
				late = append(late, (time.Since(t) - time.Millisecond).Seconds())
			}
		}()
		jsonPath := filepath.Join(b.TempDir(), "run.json")
		cmd := exec.Command(demoBin, "experiment", "--target", url, "--rate", strconv.FormatFloat(rate, 'g', -1, 64),
			"--duration", duration.String(), "--mix", path, "--request-timeout", "30s", "--json", jsonPath)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		began := time.Now()
		out, err := cmd.CombinedOutput()
		wall := time.Since(began)
		close(noiseDone)
		timerLate := <-noise
		if err != nil {
			b.Fatalf("experiment: %v\n%s", err, out)
		}
		slices.Sort(timerLate)
		usage := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())

		var doc openLoopJSON
		raw, err := os.ReadFile(jsonPath)
		if err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			b.Fatal(err)
		}
		s := doc.Scenarios[0]
		var lags []float64
		inWindow, failed := 0, 0
		for _, q := range s.Requests {
			lags = append(lags, q.Sent-q.Scheduled)
			if q.Sent <= duration.Seconds() {
				inWindow++
			}
			if q.Status != 200 {
				failed++
			}
		}
		slices.Sort(lags)
		var peak struct {
			Peak int `json:"peak_in_flight"`
		}
		var scen struct {
			Scenarios []json.RawMessage `json:"scenarios"`
		}
		_ = json.Unmarshal(raw, &scen)
		_ = json.Unmarshal(scen.Scenarios[0], &peak)

		achieved := float64(inWindow) / duration.Seconds()
		b.ReportMetric(rate, "asked-req/s")
		b.ReportMetric(achieved, "achieved-req/s")
		b.ReportMetric(achieved/rate, "achieved/asked")
		b.ReportMetric(1000*lags[len(lags)/2], "lag-p50-ms")
		b.ReportMetric(1000*lags[len(lags)*99/100], "lag-p99-ms")
		b.ReportMetric(1000*lags[len(lags)-1], "lag-max-ms")
		b.ReportMetric(1000*timerLate[len(timerLate)/2], "timer-late-p50-ms")
		b.ReportMetric(1000*timerLate[len(timerLate)*99/100], "timer-late-p99-ms")
		b.ReportMetric(1000*timerLate[len(timerLate)-1], "timer-late-max-ms")
		b.ReportMetric(float64(peak.Peak), "peak-in-flight")
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%-of-core")
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(s.Requests)), "cpu-µs/req")
		b.ReportMetric(float64(usage.Maxrss)/1024, "maxrss-MiB")
	}
}
