package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"demo/contract"
	"demo/control"
)

// TestWorkerTimeoutIsOneEntry: when --timeout kills two blocked workers,
// the log gets one WORKER TIMEOUT entry per worker — which worker, how
// long its loop was blocked, the request, and its loop goroutine's stack
// down to the blocking call — each at most about 30 lines, its lines
// together, and no other goroutine's stack (Go's own SIGABRT dump printed
// hundreds of lines per worker, interleaved).
func TestWorkerTimeoutIsOneEntry(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 3*time.Second)
	p, base := startServe(t, "--workers", "2", "--mode", "mixed", "--external", ext, "--calls", "1", "--timeout", "1s")
	first := getAsync(base + "/")
	at, m := p.waitLine(contract.StallingLine("GET /", ""), 0, 5*time.Second)
	ids := []string{m[3]}
	// The first worker is blocked and accepts nothing: this one goes to the other.
	second := getAsync(base + "/")
	_, m = p.waitLine(contract.StallingLine("GET /", ""), at+1, 5*time.Second)
	ids = append(ids, m[3])
	for _, r := range []<-chan result{first, second} {
		if res := <-r; res.err == nil && res.status < 500 {
			t.Errorf("a request on an aborted worker got %d", res.status)
		}
	}
	p.waitLine(contract.WorkerStartedLine(""), at, 5*time.Second) // replaced
	lines := p.lines()
	head := regexp.MustCompile(`ERROR WORKER TIMEOUT \(pid:(\d+)\) worker [12]/2: event loop blocked for (\d+\.\d)s \(--timeout 1s\) by GET / \(request ([0-9a-f-]{36})\); killed\. Its event loop goroutine:$`)
	entries := 0
	for i, l := range lines {
		m := head.FindStringSubmatch(l)
		if m == nil {
			if strings.Contains(l, "WORKER TIMEOUT") {
				t.Errorf("WORKER TIMEOUT line not as expected: %q", l)
			}
			continue
		}
		entries++
		if m[3] != ids[0] && m[3] != ids[1] {
			t.Errorf("entry names request %s, want one of %v", m[3], ids)
		}
		if s, _ := strconv.ParseFloat(m[2], 64); s < 1 || s > 3 {
			t.Errorf("entry says blocked for %ss, want just over the 1s timeout", m[2])
		}
		body := lines[i+1:]
		n := 0
		for n < len(body) && strings.HasPrefix(body[n], "    ") {
			n++
		}
		stack := strings.Join(body[:n], "\n")
		if n+1 > 32 || !strings.HasPrefix(body[0], "    goroutine ") {
			t.Errorf("entry of %d lines, want at most about 30 starting with the loop goroutine:\n%s\n%s", n+1, l, stack)
		}
		for _, want := range []string{"net/http.(*Client).Do", "demo/worker.(*app).mixed", "the event loop and what started it"} {
			if !strings.Contains(stack, want) {
				t.Errorf("the entry's stack does not name %s:\n%s", want, stack)
			}
		}
		if strings.Count(stack, "goroutine ") != 1 {
			t.Errorf("more than one goroutine in the entry:\n%s", stack)
		}
	}
	if entries != 2 {
		t.Errorf("%d WORKER TIMEOUT entries, want one per blocked worker", entries)
	}
	if dumps := regexp.MustCompile(`(?m)^goroutine \d+ \[`).FindAllString(p.output(), -1); len(dumps) != 0 {
		t.Errorf("%d goroutine dumps in the log, want none outside the entries", len(dumps))
	}
}

// TestWorkerTimeoutNamesTheRequestWithTheDetectorOff: with
// --slow-callback 0 nothing reports the stall before --timeout, and the
// entry still names the request, from the worker's answer to SIGABRT.
func TestWorkerTimeoutNamesTheRequestWithTheDetectorOff(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 3*time.Second)
	p, base := startServe(t, "--mode", "mixed", "--external", ext, "--calls", "1", "--timeout", "1s", "--slow-callback", "0")
	stuck := getAsync(base + "/")
	_, m := p.waitLine(regexp.MustCompile(`ERROR WORKER TIMEOUT \(pid:\d+\) worker 1/1: event loop blocked for \d+\.\ds \(--timeout 1s\)(.*); killed`), 0, 10*time.Second)
	if !regexp.MustCompile(`^ by GET / \(request [0-9a-f-]{36}\)$`).MatchString(m[1]) {
		t.Errorf("the entry says %q after the timeout, want \" by GET / (request ID)\"", m[1])
	}
	if res := <-stuck; res.err == nil && res.status < 500 {
		t.Errorf("the request on the aborted worker got %d", res.status)
	}
}

// TestStallToldOnceAndAgreed: a loop blocked for 6 s by one request. While
// it lasts, `demo status` says the worker is blocked and shows the request
// in flight on its connection (not the counts from before it), and
// /metrics shows the stall; the log reminds once (the master, at 5 s; the
// worker does not repeat it), the worker logs one total, and the master's
// histogram holds that same figure.
func TestStallToldOnceAndAgreed(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 1200*time.Millisecond)
	p, base := startServe(t, "--workers", "2", "--mode", "mixed", "--external", ext, "--calls", "5", "--metrics", "127.0.0.1:0")
	_, m := p.waitLine(regexp.MustCompile(`Metrics at (http://\S+/metrics)`), 0, time.Second)
	metricsURL := m[1]
	u, _ := url.Parse(base)
	stuck := getAsync(base + "/")
	_, m = p.waitLine(contract.StallingLine("GET /", ""), 0, 5*time.Second)
	id := m[3]

	// demo status, once the master calls it stalled (after a second).
	snap := waitStatus(t, 5*time.Second, stalled, "--port", u.Port())
	var blocked control.Worker
	for _, w := range snap.Workers {
		if stalled(w) {
			blocked = w
		}
	}
	if blocked.State != "blocked" || blocked.InFlight != 1 || blocked.Conns != 1 || blocked.Requests != 1 ||
		!strings.Contains(blocked.Culprit, id) {
		t.Errorf("blocked worker's row %+v: want state blocked, 1 request in flight on 1 connection, culprit request %s", blocked, id)
	}
	for _, w := range snap.Workers {
		if w.PID != blocked.PID && (w.State != "ready" || w.StalledFor != 0) {
			t.Errorf("the idle worker's row %+v: want ready", w)
		}
	}
	table, err := exec.Command(demoBin, "status", "--port", u.Port()).Output()
	if row := fmt.Sprintf("%d", blocked.PID); err != nil || !regexp.MustCompile(row+`\s+blocked\s+\S+\s+1\s+1\s+1\s`).Match(table) {
		t.Errorf("status table does not show worker %d blocked with 1 request in flight on 1 connection: %v\n%s", blocked.PID, err, table)
	}

	// /metrics from the master, during the stall.
	fams := scrapeMetrics(t, metricsURL)
	w := strconv.Itoa(blocked.Index)
	if v := sample(t, fams, "demo_worker_loop_blocked_seconds", w).GetGauge().GetValue(); v < 1 {
		t.Errorf("demo_worker_loop_blocked_seconds{worker=%q} = %v during the stall, want over 1", w, v)
	}
	if v := sample(t, fams, "demo_worker_requests_in_flight", w).GetGauge().GetValue(); v != 1 {
		t.Errorf("demo_worker_requests_in_flight{worker=%q} = %v, want 1", w, v)
	}
	other := strconv.Itoa(3 - blocked.Index)
	if v := sample(t, fams, "demo_worker_loop_blocked_seconds", other).GetGauge().GetValue(); v != 0 {
		t.Errorf("the idle worker's demo_worker_loop_blocked_seconds = %v, want 0", v)
	}

	if r := <-stuck; r.status != 200 {
		t.Fatalf("request: %d %v", r.status, r.err)
	}
	_, total := p.waitLine(contract.StallLine("GET /", id), 0, 5*time.Second)
	took, err := time.ParseDuration(total[1])
	if err != nil || took < 6*time.Second {
		t.Fatalf("total %q, want at least the 6 s of calls", total[1])
	}
	reminders := regexp.MustCompile(fmt.Sprintf(`WARN worker %d/2 \[%d\]: event loop still blocked after 5\.\ds by GET / \(request %s\)$`, blocked.Index, blocked.PID, id))
	if n := p.countBefore(reminders, len(p.lines())); n != 1 {
		t.Errorf("%d reminders from the master, want 1 (at 5 s)", n)
	}
	for _, re := range []string{`still blocked after \S+ by .* at `, `worker-\d\[\d+\] event loop still blocked`, `event loop was blocked for`} {
		if n := p.countBefore(regexp.MustCompile(re), len(p.lines())); n != 0 {
			t.Errorf("%d lines matching %q, want none: one reminder stream, one total", n, re)
		}
	}
	// The master's histogram has the worker's own figure (its log rounds
	// to 10 ms). Its Beat, after the stall, brings the last counts.
	for deadline := time.Now().Add(3 * time.Second); ; {
		fams = scrapeMetrics(t, metricsURL)
		if h := sample(t, fams, "demo_worker_loop_stall_seconds", w).GetHistogram(); h.GetSampleCount() > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	h := sample(t, fams, "demo_worker_loop_stall_seconds", w).GetHistogram()
	if d := time.Duration(h.GetSampleSum() * float64(time.Second)); h.GetSampleCount() != 1 || d-took > 5*time.Millisecond || took-d > 5*time.Millisecond {
		t.Errorf("master's histogram: %d stalls, %v in all; want the worker's one total of %v", h.GetSampleCount(), d, took)
	}
	if v := sample(t, fams, "demo_worker_requests_total", w).GetCounter().GetValue(); v != 1 {
		t.Errorf("demo_worker_requests_total{worker=%q} = %v, want 1", w, v)
	}
}

// scrapeMetrics reads /metrics, parsed by Prometheus' own text parser.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, raw)
	}
	return fams
}

// sample returns the sample of family name for worker index w.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name, w string) *dto.Metric {
	t.Helper()
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "worker" && l.GetValue() == w {
				return m
			}
		}
	}
	t.Fatalf("no %s{worker=%q}", name, w)
	return nil
}
