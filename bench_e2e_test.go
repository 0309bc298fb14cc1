package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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

// A tiny configuration of every scenario: correctness, not speed. The Go
// load generator is forced, since CI has no wrk.
func TestBenchPrintsRatiosAndNoErrors(t *testing.T) {
	out, stderr, code := runDemo(t, 90*time.Second, "bench",
		"--scenarios", "throughput,pipelined,capacity,scaling,startup,costs",
		"--duration", "300ms", "--warmup", "0s", "--connections", "4", "--load", "go", "--uvicorn=false",
		"--capacity", "50", "--delay", "100ms", "--probe-interval", "20ms", "--rounds", "1",
		"--new-conns", "60", "--new-conns-over", "200ms")
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
		"keep-alive demo async ×1": false, "pipelined ×16 demo async ×1": false,
		"keep-alive demo async ×1 all on": false, "keep-alive demo async ×1 all off": false,
		"keep-alive demo async ×2 shared": false, "keep-alive demo async ×2 reuse-port": false,
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
	// ... probed by a process of its own, which answered.
	if !regexp.MustCompile(`/healthcheck\s+[1-9]\d* probes on fresh connections, from a probe process of its own`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\s+p50 \S+\s+p99 \S+\s+max \S+\s+≥ 100ms \d+\s+failed 0$`).MatchString(out) {
		t.Errorf("capacity: no successful /healthcheck probes from the probe process")
	}

	// Scaling: every setup has a row whose new connections were all
	// counted by its two workers.
	setup := regexp.MustCompile(`(?m)^  (shared socket|shared \+ EPOLLEXCLUSIVE|SO_REUSEPORT per worker)\s+([\d.]+)×\s+(\S+)\s+(\d+%|-)\s+(\d+)/(\d+)\s+(\d+%)`)
	seen := map[string]bool{}
	for _, m := range setup.FindAllStringSubmatch(out, -1) {
		seen[m[1]] = true
		a, _ := strconv.Atoi(m[5])
		b, _ := strconv.Atoi(m[6])
		if a+b != 60 {
			t.Errorf("scaling, %s: workers counted %d+%d new connections, want 60", m[1], a, b)
		}
	}
	if !seen["shared socket"] || !seen["SO_REUSEPORT per worker"] {
		t.Errorf("scaling: want rows for the shared socket and SO_REUSEPORT, got %v\n%s", seen, out)
	}

	// Start-up, costs and the target summary.
	for _, s := range []string{"serve --workers 4: spawn → `running on`", "SIGKILLed worker → replacement answers",
		"Costs: everything on (access log + blocked-loop detector", "request ids are made only by the app's / paths",
		"scaling [shared]: connections spread evenly", "Targets (issue 5):"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

// The probe process prints one JSON line of results when told to stop.
func TestBenchProbeReportsOnSIGTERM(t *testing.T) {
	var probes atomic.Int32
	third := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if probes.Add(1) == 3 {
			close(third)
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()

	cmd := exec.Command(demoBin, "bench", "probe", "--url", "http://"+ln.Addr().String()+"/healthcheck", "--interval", "5ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // a failed test must not leave it running
	// Probing has begun once it says so; a few probes later, stop it.
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || !strings.Contains(line, "probing http://") {
		t.Fatalf("first line %q, %v; want the probing line", line, err)
	}
	select {
	case <-third:
	case <-time.After(5 * time.Second):
		t.Fatal("fewer than 3 probes within 5s")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe exited with %v; stdout %q", err, out.String())
	}
	var res struct {
		Probes int   `json:"probes"`
		Failed int   `json:"failed"`
		Max    int64 `json:"max_ns"`
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("stdout %q: %v", out.String(), err)
	}
	if res.Probes < 3 || res.Failed != 0 || res.Max <= 0 {
		t.Errorf("result %+v: want at least 3 probes, none failed, a positive max", res)
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
