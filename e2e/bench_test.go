package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A tiny configuration of every scenario: correctness, not speed. The Go
// load generator is forced, since CI has no wrk.
func TestBenchPrintsRatiosAndNoErrors(t *testing.T) {
	t.Parallel()
	out, stderr, code := runDemo(t, 90*time.Second, "bench",
		"--scenarios", "throughput,pipelined,capacity,scaling,startup,costs",
		"--duration", "300ms", "--warmup", "0s", "--connections", "4", "--load", "go", "--uvicorn=false",
		"--nginx-bin", "/nonexistent/nginx", "--fasthttp=false", // TestBenchMeasuresPeers runs them
		"--capacity", "50", "--delay", "100ms", "--probe-interval", "20ms", "--rounds", "1",
		"--new-conns", "60", "--new-conns-over", "200ms", "--cost-rounds", "6", "--cost-round", "200ms")
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
		"keep-alive demo async ×1": false, "pipelined ×16 demo async ×1": false, "keep-alive demo async ×1 net/http parser": false,
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

	// Costs: every configuration measured in each of the 6 rounds, and
	// each comparison with an interval (6 rounds are the fewest that give
	// a 95 % one).
	for _, name := range []string{"demo async ×1 all on", "demo async ×1 all off", "demo async ×1"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `\s+[\d.]+µs\s+[\d,]+\s+[\d,]+$`).MatchString(out) {
			t.Errorf("costs: no row for %s", name)
		}
	}
	for _, label := range []string{"everything on vs everything off", `access log alone \(all on vs demo async ×1\)`, `detector alone \(demo async ×1 vs all off\)`} {
		if !regexp.MustCompile(`(?m)^  ` + label + `\s+-?[\d.]+%\s+-?[\d.]+% … -?[\d.]+%\s+-?[\d.]+% … -?[\d.]+%$`).MatchString(out) {
			t.Errorf("costs: no line for %s with its median, interval and middle half", label)
		}
	}

	// Start-up, costs and the target summary.
	for _, s := range []string{"serve --workers 4: spawn → `running on`", "SIGKILLed worker → replacement answers",
		"Costs: server CPU time per keep-alive GET /healthcheck", "6 rounds of 200ms per server", "request ids are made only by the app's / paths",
		"costs: access log + detector ≤ 5% of req/CPU-s",
		"scaling [shared]: connections spread evenly", "Targets: "} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q", s)
		}
	}

	// The peers it could not run, each with the reason; the targets against
	// them are not measured rather than missed.
	for _, re := range []string{
		`(?m)^  nginx\s+could not run: not installed: no /nonexistent/nginx \(apt-get install nginx\)$`,
		`(?m)^  fasthttp\s+could not run: not asked for \(--fasthttp=false\)$`,
		`(?m)^  uvicorn\s+could not run: not asked for \(--uvicorn=false\)$`,
		`(?m)^  –  keep-alive: demo ×1 ≥ 1\.0× nginx .*not measured: nginx .*did not run$`,
		`(?m)^Targets: \d+ of \d+ met; 3 not measured \(a peer did not run\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report lacks a line matching %s", re)
		}
	}
	if strings.Contains(strings.ToLower(out), "issue") {
		t.Errorf("the report names an issue")
	}
}

// The peers, when this machine has them: nginx when installed, fasthttp
// when its modules can be had within a minute. Each gets its rows, demo ÷
// each is printed, and the targets against them are judged.
func TestBenchMeasuresPeers(t *testing.T) {
	t.Parallel()
	var want []string
	nginx := "nginx"
	if _, err := exec.LookPath(nginx); err != nil {
		nginx = "/usr/sbin/nginx" // Debian's, off a non-root user's PATH
	}
	_, err := exec.LookPath(nginx)
	hasNginx := err == nil
	if hasNginx {
		want = append(want, "nginx ×1")
	} else {
		t.Log("nginx: not installed (apt-get install nginx): its part of the test is skipped")
	}
	hasFasthttp := fasthttpModules(t)
	if hasFasthttp {
		want = append(want, "fasthttp GOMAXPROCS=1")
	}
	if len(want) == 0 {
		t.Skip("neither nginx nor the fasthttp peer can run here")
	}
	out, stderr, code := runDemo(t, 4*time.Minute, "bench", "--scenarios", "throughput,pipelined",
		"--duration", "300ms", "--warmup", "0s", "--connections", "4", "--load", "go", "--uvicorn=false",
		"--nginx="+strconv.FormatBool(hasNginx), "--nginx-bin", nginx, "--fasthttp="+strconv.FormatBool(hasFasthttp),
		"--fasthttp-src", fasthttpSrc)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	t.Logf("report:\n%s", out)
	for _, peer := range want {
		q := regexp.QuoteMeta(peer)
		for _, re := range []string{
			// A row per load, every request answered, none failed.
			`(?m)^keep-alive\s+` + q + `\s+[1-9][\d,]*\s.*\s0\s+0$`,
			`(?m)^pipelined ×16\s+` + q + `\s+[1-9][\d,]*\s.*\s0\s+0$`,
			// Its version in the header.
			`(?m)^  ` + q + `\s+(nginx \d+\.\d+\.\d+ |fasthttp v\d+\.\d+\.\d+ \(go)`,
		} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("%s: report lacks a line matching %s", peer, re)
			}
		}
		// demo ÷ the peer, in its column of the peers table.
		if !strings.Contains(out, "demo async ×1 ÷ each peer") {
			t.Errorf("no demo ÷ peer section")
		}
	}
	head := regexp.MustCompile(`(?m)^  scenario\s+(.+)$`).FindStringSubmatch(out)
	ratios := regexp.MustCompile(`(?m)^  (keep-alive|pipelined ×16)\s+((?:[\d.]+×|-)(?:\s+(?:[\d.]+×|-))*)$`).FindAllStringSubmatch(out, -1)
	if head == nil || len(ratios) != 2 {
		t.Fatalf("no demo ÷ peer table (head %q, rows %q)", head, ratios)
	}
	for _, r := range ratios {
		if n := len(strings.Fields(r[2])); n != 1+len(want) || strings.Contains(r[2], "-") {
			t.Errorf("%s: ratios %q; want one for net/http and each of %v", r[1], r[2], want)
		}
	}
	targets := map[string]bool{
		`keep-alive: demo ×1 ≥ 1\.0× nginx`: hasNginx, `keep-alive: demo ×1 ≥ 1\.2× fasthttp`: hasFasthttp,
		`pipelined: demo ×1 ≥ 0\.8× fasthttp`: hasFasthttp,
	}
	for re, judged := range targets {
		mark := "[✓✗]"
		if !judged {
			mark = "–"
		}
		if !regexp.MustCompile(`(?m)^  ` + mark + `  ` + re).MatchString(out) {
			t.Errorf("target %s: want it marked %s", re, mark)
		}
	}
	if !regexp.MustCompile(`bytes per /healthcheck response \(status line, headers, body\): demo async ×1 137, `).MatchString(out) {
		t.Errorf("no bytes-per-response line")
	}
}

// fasthttpSrc is the fasthttp peer's module in this checkout.
const fasthttpSrc = "../bench/peers/fasthttp"

// fasthttpModules reports whether the fasthttp peer can be built here: a go
// command, and its modules from the module proxy (or the module cache)
// within a minute.
func fasthttpModules(t *testing.T) bool {
	if _, err := exec.LookPath("go"); err != nil {
		t.Log("fasthttp: no go command on PATH: its part of the test is skipped")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download")
	cmd.Dir = fasthttpSrc
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("fasthttp: its modules cannot be had (%v: %s): its part of the test is skipped", err, strings.TrimSpace(string(out)))
		return false
	}
	return true
}

// The probe process prints one JSON line of results when told to stop.
func TestBenchProbeReportsOnSIGTERM(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
