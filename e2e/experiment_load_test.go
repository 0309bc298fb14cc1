package e2e

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// openLoopJSON is the part of an open-loop --json the tests read.
type openLoopJSON struct {
	Scenarios []struct {
		Name     string  `json:"name"`
		Kind     string  `json:"kind"`
		Workers  int     `json:"workers"`
		Achieved float64 `json:"achieved_rate"`
		Routes   []struct {
			Route  string         `json:"route"`
			Sent   int            `json:"sent"`
			OK     int            `json:"ok"`
			Failed map[string]int `json:"failed"`
			P99    float64        `json:"p99_s"`
		} `json:"routes"`
		Liveness struct {
			Probes   int `json:"probes"`
			Failed   int `json:"failed"`
			Restarts int `json:"restarts"`
		} `json:"liveness"`
		SLOMet   *bool `json:"slo_met"`
		Requests []struct {
			Route     string   `json:"route"`
			Scheduled float64  `json:"scheduled_s"`
			Sent      float64  `json:"sent_s"`
			Started   *float64 `json:"started_s"`
			Finished  float64  `json:"finished_s"`
			Status    int      `json:"status"`
			Cause     string   `json:"cause"`
		} `json:"requests"`
		HealthChecks []struct {
			Kind string `json:"kind"`
		} `json:"health_checks"`
	} `json:"scenarios"`
	SLO []struct {
		Workers int    `json:"fewest_workers"`
		Answer  string `json:"answer"`
	} `json:"slo"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// The generator controls when each request leaves; the schedule has exactly
// rate × duration arrivals by construction (experiment's schedule tests
// check it is Poisson). So the achieved rate is the asked one as long as
// every arrival leaves on time: count the requests that left within the
// window against rate × duration. A generator that fell behind by more
// than 5 % of the window would miss it.
func TestExperimentOpenLoopKeepsTheAskedRate(t *testing.T) {
	const rate, secs = 400, 1.5
	jsonPath := filepath.Join(t.TempDir(), "run.json")
	r := startExperiment(t, "--rate", "400", "--duration", "1500ms", "--mix", "/healthcheck",
		"--workers", "1", "--json", jsonPath)
	if code := r.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("experiment exited %d", code)
	}
	t.Logf("stdout:\n%s", r.stdout)
	if left := markedPids(r.marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	var doc openLoopJSON
	readJSON(t, jsonPath, &doc)
	if len(doc.Scenarios) != 1 || doc.Scenarios[0].Kind != "open-loop" || doc.Scenarios[0].Name != "1 worker" {
		t.Fatalf("scenarios %+v", doc.Scenarios)
	}
	s := doc.Scenarios[0]
	if n := len(s.Requests); n != rate*secs {
		t.Fatalf("%d requests, want exactly %d", n, int(rate*secs))
	}
	var inWindow int
	var lags []float64
	for _, q := range s.Requests {
		if q.Status != 200 {
			t.Errorf("a request to %s failed: %+v", q.Route, q)
		}
		if q.Sent <= secs {
			inWindow++
		}
		lags = append(lags, q.Sent-q.Scheduled)
	}
	slices.Sort(lags)
	achieved := float64(inWindow) / secs
	t.Logf("asked %d/s, achieved %.1f/s (reported %.1f/s); lag p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		rate, achieved, s.Achieved, 1000*lags[len(lags)/2], 1000*lags[len(lags)*99/100], 1000*lags[len(lags)-1])
	if achieved < 0.95*rate || achieved > 1.05*rate {
		t.Errorf("achieved %.1f requests/s, want %d ± 5%%", achieved, rate)
	}
	if math.Abs(s.Achieved-achieved) > 1/secs { // one request, at the window's edge
		t.Errorf("the report says %.1f/s, the requests %.1f/s", s.Achieved, achieved)
	}
	// Each request left close to its scheduled time: a generator that
	// waited for answers (closed loop) would drift by their latency. The
	// median stays under a millisecond or two even on a busy machine.
	if p50 := lags[len(lags)/2]; p50 > 0.02 {
		t.Errorf("median lag %.1f ms, want under 20 ms", 1000*p50)
	}
	if len(s.Routes) != 1 || s.Routes[0].Route != "/healthcheck" || s.Routes[0].Sent != 600 || s.Routes[0].OK != 600 {
		t.Errorf("routes %+v", s.Routes)
	}
	if !regexp.MustCompile(`(?m)^  /healthcheck\s+600\s+600\s+`).MatchString(r.stdout.String()) {
		t.Error("no route row in the text output")
	}
	if s.Liveness.Probes < 1 || s.Liveness.Restarts != 0 {
		t.Errorf("liveness %+v: want probes and no restart against a fast route", s.Liveness)
	}
}

// Ten /mixed requests a second, each holding a loop for 2 × 150 ms: one
// worker cannot keep up (its queue grows to seconds, its health checks and
// liveness probes wait), four can.
func TestExperimentWorkersSweepAnswersTheSLO(t *testing.T) {
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "report.html")
	r := startExperiment(t, "--rate", "10", "--duration", "2s", "--mix", "/mixed", "--delay", "150ms",
		"--workers", "1,4", "--slo", "p99<2.5s", "--json", jsonPath, "--report", htmlPath)
	if code := r.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("experiment exited %d", code)
	}
	out := r.stdout.String()
	t.Logf("stdout:\n%s", out)
	var doc openLoopJSON
	readJSON(t, jsonPath, &doc)
	if len(doc.Scenarios) != 2 || doc.Scenarios[0].Name != "1 worker" || doc.Scenarios[1].Name != "4 workers" {
		t.Fatalf("scenarios: want 1 worker and 4 workers (the mode does not matter without /), got %+v", doc.Scenarios)
	}
	one, four := doc.Scenarios[0], doc.Scenarios[1]
	if one.SLOMet == nil || *one.SLOMet || one.Routes[0].P99 < 2.5 {
		t.Errorf("1 worker: p99 %.2fs, SLO met %v; want a p99 over 2.5 s", one.Routes[0].P99, one.SLOMet)
	}
	if one.Liveness.Restarts < 1 {
		t.Errorf("1 worker: liveness %+v, want a restart: its loop was blocked for seconds", one.Liveness)
	}
	if four.SLOMet == nil || !*four.SLOMet || four.Liveness.Restarts != 0 {
		t.Errorf("4 workers: p99 %.2fs, liveness %+v, SLO met %v", four.Routes[0].P99, four.Liveness, four.SLOMet)
	}
	if len(doc.SLO) != 1 || doc.SLO[0].Workers != 4 {
		t.Errorf("slo %+v", doc.SLO)
	}
	if !strings.Contains(out, "\nSLO p99<2.5s with no liveness restart: fewest workers that meet it: 4 (p99 ") {
		t.Error("stdout lacks the one-line answer")
	}
	// Where we started the server, its log says when each request began.
	for _, q := range one.Requests {
		if q.Status == 200 && (q.Started == nil || *q.Started < q.Sent || *q.Started > q.Finished) {
			t.Errorf("1 worker: request %+v: want a start between sent and finished", q)
			break
		}
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), `<svg class="latency"`); n != 2 {
		t.Errorf("%d latency plots in the report, want 2", n)
	}
}

func TestExperimentOpenLoopInterruptedStopsEverything(t *testing.T) {
	t.Parallel()
	r := startExperiment(t, "--rate", "20", "--duration", "30s", "--mix", "/mixed", "--delay", "1s")
	r.waitSockets(t, 5)
	r.interrupt(t, markedPids(r.marker))
	if msg := lastLine(r.stderr.String()); !strings.Contains(msg, "interrupted") {
		t.Errorf("stderr %q, want a last line saying it was interrupted", r.stderr)
	}
	if r.stdout.Len() > 0 {
		t.Errorf("results after an interrupt: %q", r.stdout)
	}
}
