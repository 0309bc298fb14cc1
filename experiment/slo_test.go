package experiment

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSLO(t *testing.T) {
	for in, want := range map[string][]Objective{
		"p99<1s":              {{"p99", false, time.Second}},
		"p50 <= 250ms":        {{"p50", true, 250 * time.Millisecond}},
		"max<2.5":             {{"max", false, 2500 * time.Millisecond}},
		"p90<0.5,p99<=1500ms": {{"p90", false, 500 * time.Millisecond}, {"p99", true, 1500 * time.Millisecond}},
	} {
		got, err := ParseSLO(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseSLO(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if o := (Objective{"p99", true, 1500 * time.Millisecond}); o.String() != "p99<=1.5s" {
		t.Errorf("String: %q", o.String())
	}
	for _, in := range []string{"", "p98<1s", "p99>1s", "p99<", "p99<0", "p99<-1s", "p99<soon", "p99=1s", "p99<1s,", "avg<1s"} {
		_, err := ParseSLO(in)
		if err == nil || !strings.HasPrefix(err.Error(), "--slo ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSLO(%q): %v, want one line naming --slo", in, err)
		}
	}
}

// openResult makes an open-loop result whose successful requests took the
// given latencies (ms) and whose failed ones timed out.
func openResult(workers int, latencies []int, failed int, liveFailures ...bool) Result {
	r := Result{Scenario: Scenario{Workers: workers, Path: "/"}}
	for i, l := range latencies {
		r.Requests = append(r.Requests, Request{Index: i + 1, Route: "/", Scheduled: ms(10 * i), Sent: ms(10 * i), Finished: ms(10*i + l), Status: 200})
	}
	for i := range failed {
		r.Requests = append(r.Requests, Request{Index: len(latencies) + i + 1, Route: "/", Finished: ms(10000), Cause: CauseTimeout, Err: "read response: i/o timeout"})
	}
	for i, f := range liveFailures {
		p := Probe{Sent: time.Duration(i) * time.Second, Latency: ms(2), Status: 200}
		if f {
			p = Probe{Sent: p.Sent, Latency: time.Second, Cause: CauseTimeout, Err: "i/o timeout"}
		}
		r.Liveness = append(r.Liveness, p)
	}
	return r
}

func TestObjectiveValueCountsFailuresAsTooSlow(t *testing.T) {
	lat := make([]int, 100)
	for i := range lat {
		lat[i] = i + 1 // 1..100 ms
	}
	p99 := Objective{"p99", false, time.Second}
	if v, ok := ObjectiveValue(p99, openResult(1, lat, 0)); !ok || v != ms(99) {
		t.Errorf("p99 of 1..100 ms: %v %v", v, ok)
	}
	// One failure in 101: the 99th percentile (rank 100) is still answered.
	if v, ok := ObjectiveValue(p99, openResult(1, lat, 1)); !ok || v != ms(100) {
		t.Errorf("p99 with 1 failure in 101: %v %v", v, ok)
	}
	// Two in 102: rank 101 falls on a failure.
	if _, ok := ObjectiveValue(p99, openResult(1, lat, 2)); ok {
		t.Error("p99 with 2 failures in 102 must not be met")
	}
	if v, ok := ObjectiveValue(Objective{"p50", false, time.Second}, openResult(1, lat, 2)); !ok || v != ms(51) {
		t.Errorf("p50 with failures: %v %v", v, ok)
	}
}

func TestLivenessRestarts(t *testing.T) {
	for _, tc := range []struct {
		fails []bool
		want  int
	}{
		{[]bool{false, false, false}, 0},
		{[]bool{true, true, false, true, true, false}, 0},
		{[]bool{true, true, true}, 1},
		{[]bool{true, true, true, true, true}, 1}, // the count starts over
		{[]bool{true, true, true, true, true, true, false, true}, 2},
	} {
		if got := LivenessRestarts(openResult(1, nil, 0, tc.fails...).Liveness); got != tc.want {
			t.Errorf("%v: %d restarts, want %d", tc.fails, got, tc.want)
		}
	}
	// A late answer fails the probe like no answer.
	if LivenessOK(Probe{Latency: 1100 * time.Millisecond, Status: 200}) || !LivenessOK(Probe{Latency: ms(5), Status: 302}) || LivenessOK(Probe{Latency: ms(5), Status: 500}) {
		t.Error("LivenessOK: want 2xx/3xx within the timeout")
	}
}

func TestAnswerSLO(t *testing.T) {
	fast := []int{100, 200, 300, 400}
	slow := []int{900, 1500, 2000, 2500}
	objs, _ := ParseSLO("p99<1s")
	rep := &Report{Settings: Settings{Open: &OpenLoop{Rate: 1, Duration: time.Second, Mix: Mix{{"/", 1}}}}, SLO: objs,
		Results: []Result{
			openResult(1, slow, 0, true, true, true),
			openResult(2, fast, 0, true, true, true), // fast but restarted: not enough
			openResult(4, fast, 0, false, false),
			openResult(8, fast, 0, false),
		}}
	a := AnswerSLO(rep)
	if len(a) != 1 || a[0].Workers != 4 || a[0].Line != "p99<1s with no liveness restart: fewest workers that meet it: 4 (p99 400 ms, 0 liveness restarts)" {
		t.Errorf("answer %+v", a)
	}

	rep.Results = rep.Results[:2]
	a = AnswerSLO(rep)
	if len(a) != 1 || a[0].Workers != 0 || !strings.Contains(a[0].Line, "no worker count tried (1, 2) meets it; the best, 2 workers, got p99 400 ms, 1 liveness restart") {
		t.Errorf("none met: %+v", a)
	}

	// With several modes, one answer each.
	rep.Results = []Result{openResult(1, slow, 0), openResult(1, fast, 0)}
	rep.Results[0].Scenario.Mode, rep.Results[1].Scenario.Mode = Mixed, Async
	a = AnswerSLO(rep)
	if len(a) != 2 || !strings.HasPrefix(a[0].Line, "mixed: ") || a[0].Workers != 0 || !strings.HasPrefix(a[1].Line, "async: ") || a[1].Workers != 1 {
		t.Errorf("per mode: %+v", a)
	}
	if !strings.Contains(a[0].Line, "p99 2.50 s") {
		t.Errorf("the best of mixed: %q", a[0].Line)
	}
}
