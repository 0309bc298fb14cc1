package experiment

import (
	"strings"
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	ten := []time.Duration{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	for _, tc := range []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{ten, 50, 5},
		{ten, 90, 9},
		{ten, 91, 10},
		{ten, 100, 10},
		{ten, 1, 1},
		{ten, 0, 1},
		{[]time.Duration{300, 100}, 50, 100}, // two requests: the faster one, not their mean
		{[]time.Duration{7}, 50, 7},
		{nil, 50, 0},
	} {
		if got := Percentile(tc.ds, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.ds, tc.p, got, tc.want)
		}
	}
	if ten[0] != 10 {
		t.Errorf("Percentile sorted its input in place: %v", ten)
	}
}

func TestStatsOfAResult(t *testing.T) {
	r := mixedOne()
	r.Requests = append(r.Requests, Request{Index: 3, Sent: 0, Finished: ms(50), Err: "connection refused"})
	rs := r.RequestStats()
	if rs.N != 2 || rs.P50 != ms(4010) || rs.Max != ms(8020) {
		t.Errorf("request stats %+v: want the 2 successful ones, p50 4.01s, max 8.02s", rs)
	}
	if r.Failed() != 1 {
		t.Errorf("Failed() = %d, want 1", r.Failed())
	}
	if got := r.Stalled(); got != ms(8009) {
		t.Errorf("Stalled() = %v, want the sum of both stalls 8.009s", got)
	}
	// Probes sent up to 7.8 s waited more than 200 ms for the loop; the
	// last two came just before it freed up.
	if got := r.LateProbes(testSettings.LateAfter()); got != 79 {
		t.Errorf("LateProbes = %d of %d, want 79", got, len(r.Probes))
	}
	if got := asyncOne().LateProbes(testSettings.LateAfter()); got != 0 {
		t.Errorf("async LateProbes = %d, want 0", got)
	}
	if got := mixedTwoSpread().PerWorker(); len(got) != 3 || got[1] != 1 || got[2] != 1 {
		t.Errorf("PerWorker = %v, want [0 1 1]", got)
	}
}

func TestPredict(t *testing.T) {
	st := testSettings // 2 calls × 2 s = 4 s per request
	for _, tc := range []struct {
		s    Scenario
		size int
		want time.Duration
	}{
		{Scenario{Mode: Mixed, Workers: 1, Concurrency: 2, Path: "/"}, 40, 8 * time.Second},
		{Scenario{Mode: Mixed, Workers: 2, Concurrency: 2, Path: "/"}, 40, 4 * time.Second},
		{Scenario{Mode: Mixed, Workers: 2, Concurrency: 3, Path: "/"}, 40, 8 * time.Second}, // ⌈3/2⌉ rounds
		{Scenario{Mode: Mixed, Workers: 4, Concurrency: 2, Path: "/"}, 40, 4 * time.Second},
		{Scenario{Mode: Async, Workers: 1, Concurrency: 100, Path: "/"}, 40, 4 * time.Second},
		{Scenario{Mode: Threadpool, Workers: 1, Concurrency: 2, Path: "/"}, 40, 4 * time.Second},
		{Scenario{Mode: Threadpool, Workers: 1, Concurrency: 2, Path: "/"}, 1, 8 * time.Second},
		{Scenario{Mode: Threadpool, Workers: 2, Concurrency: 4, Path: "/"}, 1, 8 * time.Second}, // ⌈4/(1×2)⌉
		{Scenario{Mode: Threadpool, Workers: 2, Concurrency: 4, Path: "/"}, 2, 4 * time.Second},
	} {
		st.ThreadpoolSize = tc.size
		if got := Predict(tc.s, st); got != tc.want {
			t.Errorf("Predict(%s, pool %d, N=%d) = %v, want %v", tc.s.Name(), tc.size, tc.s.Concurrency, got, tc.want)
		}
	}
}

func TestModelCheckFlagsUnevenAccept(t *testing.T) {
	m := CheckModel(mixedTwoGrabbed(), testSettings)
	if m.Predicted != 4*time.Second || !m.Deviates() || m.Percent() != "+100%" {
		t.Fatalf("mixed×2, one worker took both: %+v (%s), want predicted 4s and a +100%% deviation", m, m.Percent())
	}
	w := m.Warning()
	for _, want := range []string{"⚠ deviates from the model by +100%", "uneven accept", "worker 1 took 2 of the 2"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}

	for _, r := range []Result{mixedOne(), asyncOne(), mixedTwoSpread(), threadpoolOne()} {
		if m := CheckModel(r, testSettings); m.Deviates() || m.Warning() != "" {
			t.Errorf("%s: %+v flagged, want within ±25%%", r.Scenario.Name(), m)
		}
	}

	slow := asyncOne()
	slow.Wall = ms(6000)
	if m := CheckModel(slow, testSettings); !m.Deviates() || !strings.Contains(m.Warning(), "+50%") || strings.Contains(m.Reason, "uneven") {
		t.Errorf("async at 6s: %q, want a +50%% warning without blaming accept", m.Warning())
	}
	fast := mixedOne()
	fast.Wall = ms(4000)
	if m := CheckModel(fast, testSettings); !m.Deviates() || !strings.Contains(m.Reason, "faster") {
		t.Errorf("mixed×1 at 4s: %q, want a faster-than-model warning", m.Warning())
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Result
		want string
	}{
		{"mixed×1", mixedOne(), "requests ran one after the other; health checks waited up to 8.0 s"},
		{"async×1", asyncOne(), "both requests overlapped; health checks answered within 2 ms"},
		{"mixed×2 grabbed", mixedTwoGrabbed(), "worker 1 accepted both connections and ran them one after the other while worker 2 idled — more workers only hide the problem; health checks answered within 3 ms"},
		{"mixed×2 spread", mixedTwoSpread(), "both requests overlapped, spread over workers 1 and 2 — more workers only hide the problem: each loop stalled for every request it took; health checks waited up to 4.0 s"},
	} {
		if got := Describe(tc.r, testSettings); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestDescribeEdgeCases(t *testing.T) {
	// Three requests, two at a time (threadpool of 2).
	r := Result{Scenario: Scenario{Mode: Threadpool, Workers: 1, Concurrency: 3, Path: "/"}, Requests: []Request{
		{Index: 1, Started: ms(1), HasStart: true, Finished: ms(4000), Status: 200},
		{Index: 2, Started: ms(1), HasStart: true, Finished: ms(4000), Status: 200},
		{Index: 3, Started: ms(4000), HasStart: true, Finished: ms(8000), Status: 200},
	}}
	if got := Describe(r, testSettings); !strings.HasPrefix(got, "requests partly overlapped, at most 2 at a time; no health check was sent") {
		t.Errorf("partial overlap: %q", got)
	}
	r.Requests[2].Status, r.Requests[2].Err = 0, "EOF"
	if got := Describe(r, testSettings); !strings.HasPrefix(got, "both requests overlapped") || !strings.HasSuffix(got, "1 of 3 requests failed") {
		t.Errorf("one failed: %q", got)
	}
	// Three workers, one took all: the idle ones are named.
	g := mixedOne()
	g.Scenario = Scenario{Mode: Mixed, Workers: 3, Concurrency: 2, Path: "/"}
	if got := Describe(g, testSettings); !strings.Contains(got, "while workers 2 and 3 idled") {
		t.Errorf("idle workers: %q", got)
	}
	// Failed probes are counted; a request's log line missing leaves the
	// worker unknown and the words about overlap only.
	a := asyncOne()
	a.Probes[3] = Probe{Sent: ms(300), Latency: ms(1), Err: "connection reset"}
	a.Requests[0].HasStart, a.Requests[0].Worker = false, 0
	a.Scenario.Workers = 2
	if got := Describe(a, testSettings); got != "both requests overlapped; health checks answered within 2 ms (1 failed)" {
		t.Errorf("failed probe: %q", got)
	}
}

func TestDescribeAFewLateProbes(t *testing.T) {
	// mixed×2 as measured: worker 1 accepted the first probe with both
	// requests, so that one probe waited for both; worker 2 answered the rest.
	r := mixedTwoGrabbed()
	r.Probes[0].Latency = ms(8010)
	want := "1 of 81 health checks waited up to 8.0 s, the others answered within 3 ms"
	if got := Describe(r, testSettings); !strings.HasSuffix(got, want) {
		t.Errorf("got %q, want it to end with %q", got, want)
	}
}

func TestPeakOverlapIgnoresMereContact(t *testing.T) {
	tol := ms(1000)
	touching := []interval{{0, ms(4000)}, {ms(3990), ms(8000)}} // handover seen 10 ms apart
	if got := peakOverlap(touching, tol); got != 1 {
		t.Errorf("touching intervals: peak %d, want 1", got)
	}
	nested := []interval{{0, ms(4000)}, {ms(100), ms(3900)}, {ms(200), ms(3000)}}
	if got := peakOverlap(nested, tol); got != 3 {
		t.Errorf("nested intervals: peak %d, want 3", got)
	}
}
