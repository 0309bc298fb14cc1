package main

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runDemo runs `demo args...` to completion (or kills it after timeout) and
// returns its stdout, stderr and exit code.
func runDemo(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, demoBin, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("demo %s still running after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, out.String(), errOut.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// A tiny configuration of every default scenario: correctness, not speed.
// The Go load generator is forced, since CI has no wrk.
func TestBenchPrintsRatiosAndNoErrors(t *testing.T) {
	out, stderr, code := runDemo(t, 60*time.Second, "bench",
		"--duration", "300ms", "--warmup", "0s", "--connections", "4", "--load", "go", "--uvicorn=false",
		"--capacity", "50", "--delay", "100ms", "--probe-interval", "20ms", "--rounds", "1")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	t.Logf("report:\n%s", out)

	// The table: a header with ratio columns, then one row per server and
	// load, each ending in its non-2xx and error counts.
	header := regexp.MustCompile(`(?m)^scenario\s+server\s+req/s\s+×\s+CPU\s+×\s+req/CPU-s\s+×\s+p50\s+×\s+p99\s+×\s+non-2xx\s+errors$`)
	if !header.MatchString(out) {
		t.Fatalf("no table header with ratio columns")
	}
	row := regexp.MustCompile(`(?m)^(keep-alive|pipelined ×16)\s+(.+?)\s+([\d,]+)\s+([\d.]+)\s+\d+%\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+.*\s(\d+)\s+(\d+)$`)
	rows := row.FindAllStringSubmatch(out, -1)
	want := map[string]bool{
		"keep-alive net/http GOMAXPROCS=1": false, "pipelined ×16 net/http GOMAXPROCS=1": false,
		"keep-alive demo async ×1": false, "pipelined ×16 demo async ×1": false, "keep-alive demo async ×2": false,
	}
	for _, m := range rows {
		name := m[1] + " " + m[2]
		want[name] = true
		if m[8] != "0" || m[9] != "0" {
			t.Errorf("%s: non-2xx %s, errors %s; want none", name, m[8], m[9])
		}
		if m[3] == "0" {
			t.Errorf("%s: no requests answered", name)
		}
		if m[2] == "net/http GOMAXPROCS=1" && (m[4] != "1.00" || m[7] != "1.00") {
			t.Errorf("%s: the baseline's ratios are %s and %s, want 1.00", name, m[4], m[7])
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("no table row for %s", name)
		}
	}

	// Capacity: every slow request answered, no error, health probes sent.
	if !regexp.MustCompile(`completed\s+50 of 50 with 2xx in \S+ \(budget 1\.20s\)\s+non-2xx 0\s+errors 0`).MatchString(out) {
		t.Errorf("capacity: not all 50 requests completed without error")
	}
	if !regexp.MustCompile(`/healthcheck\s+[1-9]\d* probes .* failed 0`).MatchString(out) {
		t.Errorf("capacity: no successful /healthcheck probes")
	}
	// Start-up and scaling sections, and the target summary.
	for _, s := range []string{"serve --workers 4: spawn → `running on`", "SIGKILLed worker → replacement answers",
		"Scaling (keep-alive): demo ×2 does", "Targets (issue 5):"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--scenarios", "speed"},
		{"bench", "--connections", "0"},
		{"bench", "--load", "ab"},
	} {
		_, stderr, code := runDemo(t, 10*time.Second, args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("demo %s: exit %d, stderr %q; want exit %d and one line", strings.Join(args, " "), code, stderr, exitUsage)
		}
	}
}
