package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"demo/supervisor"
)

// fixed is a Source with one snapshot: the supervisor's own tests and the
// end-to-end test drive the real table; this one checks the translation.
type fixed struct {
	snap supervisor.Snapshot
	err  error
}

func (f fixed) Snapshot(context.Context) (supervisor.Snapshot, error) { return f.snap, f.err }

// scrape serves src on 127.0.0.1:0 and reads /metrics once, parsed by
// Prometheus' own text parser.
func scrape(t *testing.T, src Source) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(Handler(src))
	defer func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want Prometheus' text format", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", body, err)
	}
	return resp.StatusCode, families
}

// value finds the sample of family name with the given labels.
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f := families[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		if len(got) == len(labels) {
			return m
		}
	}
	t.Fatalf("no %s with labels %v", name, labels)
	return nil
}

func TestMetricsFromTheSnapshot(t *testing.T) {
	var stalls supervisor.StallHistogram
	stalls.Counts = make([]uint64, len(supervisor.StallBuckets)+1)
	stalls.Counts[0] = 3                            // ≤ 100ms
	stalls.Counts[4] = 1                            // ≤ 2.5s
	stalls.Counts[len(supervisor.StallBuckets)] = 1 // above every bound
	stalls.Count, stalls.Sum = 5, 402*time.Second
	snap := supervisor.Snapshot{
		Wanted: 2,
		Workers: []supervisor.WorkerSnapshot{
			{Index: 1, State: supervisor.Ready},
			{Index: 2, State: supervisor.Starting},
		},
		Slots: []supervisor.SlotSnapshot{
			{Index: 1, Wanted: true, Requests: 42, InFlight: 3, Conns: 5, Blocked: 2500 * time.Millisecond, Stalls: stalls},
			{Index: 2, Wanted: true, Requests: 7},
		},
	}
	snap.Slots[0].Restarts[supervisor.RestartTimeout] = 2
	snap.Slots[1].Restarts[supervisor.RestartReload] = 1
	code, fams := scrape(t, fixed{snap: snap})
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	w1, w2 := map[string]string{"worker": "1"}, map[string]string{"worker": "2"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"demo_worker_requests_total", w1, 42},
		{"demo_worker_requests_total", w2, 7},
		{"demo_worker_requests_in_flight", w1, 3},
		{"demo_worker_connections", w1, 5},
		{"demo_worker_loop_blocked_seconds", w1, 2.5},
		{"demo_worker_loop_blocked_seconds", w2, 0},
		{"demo_worker_ready", w1, 1},
		{"demo_worker_ready", w2, 0},
		{"demo_worker_restarts_total", map[string]string{"worker": "1", "cause": "timeout"}, 2},
		{"demo_worker_restarts_total", map[string]string{"worker": "1", "cause": "crash"}, 0},
		{"demo_worker_restarts_total", map[string]string{"worker": "2", "cause": "reload"}, 1},
	} {
		m := value(t, fams, tc.name, tc.labels)
		var got float64
		switch {
		case m.Gauge != nil:
			got = m.Gauge.GetValue()
		case m.Counter != nil:
			got = m.Counter.GetValue()
		}
		if got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if v := fams["demo_workers"].Metric[0].Gauge.GetValue(); v != 2 {
		t.Errorf("demo_workers = %v, want 2", v)
	}
	h := value(t, fams, "demo_worker_loop_stall_seconds", w1).Histogram
	if h.GetSampleCount() != 5 || h.GetSampleSum() != 402 {
		t.Errorf("stall histogram count %d sum %v, want 5 and 402", h.GetSampleCount(), h.GetSampleSum())
	}
	cumulative := map[float64]uint64{0.1: 3, 0.25: 3, 1: 3, 2.5: 4, 300: 4}
	for _, b := range h.Bucket {
		if want, ok := cumulative[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	// The master's own process and runtime.
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}

// TestMetricsWithoutTheMaster: once the table cannot be read (the master
// is stopping), the process's own metrics are still served.
func TestMetricsWithoutTheMaster(t *testing.T) {
	code, fams := scrape(t, fixed{err: errors.New("supervisor not running")})
	if code != http.StatusOK || fams["process_open_fds"] == nil || fams["demo_worker_requests_total"] != nil {
		t.Errorf("status %d, families %d: want 200 with the process metrics only", code, len(fams))
	}
}
