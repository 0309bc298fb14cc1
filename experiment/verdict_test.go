package experiment

import (
	"strings"
	"testing"
)

// targetBurst turns a local fixture into what a --target burst measures:
// no worker, no server start, a baseline of quick health checks.
func targetBurst(r Result, path string) Result {
	r.Scenario = Scenario{Concurrency: len(r.Requests), Path: path}
	r.Stalls = nil
	for i := range r.Requests {
		q := &r.Requests[i]
		q.Route, q.Worker, q.HasStart, q.Started, q.ID = path, 0, false, 0, ""
	}
	r.Baseline = []Probe{
		{Sent: 0, Latency: ms(2), Status: 200},
		{Sent: ms(100), Latency: ms(1), Status: 200},
		{Sent: ms(200), Latency: ms(3), Status: 200},
	}
	return r
}

func TestJudgeTheArticlesRoutes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Result
		label string
		words []string
	}{
		{"one worker, blocking", targetBurst(mixedOne(), "/"), "blocks", []string{
			"blocks the loop: health checks waited up to 8.0 s while 2 requests to / were in flight; they finished at 4.0 s and 8.0 s, one after the other",
		}},
		{"one worker, async", targetBurst(asyncOne(), "/all-async"), "does not block", []string{
			"does not block the loop: health checks answered within 2 ms while 2 requests to /all-async were in flight; they finished at 4.0 s and 4.0 s, together",
		}},
		// An idle sibling answered the health checks while one worker ran
		// both requests one after the other: the evidence disagrees.
		{"two workers, one took both", targetBurst(mixedTwoGrabbed(), "/"), "inconclusive", []string{
			"inconclusive: health checks answered within 3 ms while 2 requests to / were in flight, yet they finished at 4.0 s and 8.0 s, one after the other",
			"an idle one may have answered",
		}},
		// Each worker took one request and blocked on it alone.
		{"two workers, one each", targetBurst(mixedTwoSpread(), "/"), "inconclusive", []string{
			"inconclusive: health checks waited up to 4.0 s while 2 requests to / were in flight, yet they finished at 4.0 s and 4.0 s, together",
			"--concurrency",
		}},
	} {
		v := Judge(tc.r, testSettings)
		if v.Label() != tc.label {
			t.Errorf("%s: %s (%s), want %s", tc.name, v.Label(), v.Words, tc.label)
		}
		for _, w := range tc.words {
			if !strings.Contains(v.Words, w) {
				t.Errorf("%s: words %q lack %q", tc.name, v.Words, w)
			}
		}
	}
}

func TestJudgeRoundsAndOneHiccup(t *testing.T) {
	// Four requests, two at a time (a server with two blocked workers):
	// late health checks and two rounds → blocks.
	r := Result{Scenario: Scenario{Concurrency: 4, Path: "/"}, Baseline: []Probe{{Latency: ms(1), Status: 200}}}
	for i, f := range []int{1000, 1010, 2000, 2005} {
		r.Requests = append(r.Requests, Request{Index: i + 1, Route: "/", Finished: ms(f), Status: 200})
	}
	r.Probes = probesUntil(ms(2005), ms(2000), ms(1))
	v := Judge(r, testSettings)
	if v.Label() != "blocks" || v.Order != InRounds || v.Rounds != 2 || !strings.Contains(v.Words, "in 2 rounds") {
		t.Errorf("two rounds with late health checks: %s %s %d: %s", v.Label(), v.Order, v.Rounds, v.Words)
	}

	// One slow probe in twenty (a busy machine) is not "late".
	a := targetBurst(asyncOne(), "/all-async")
	a.Probes[5].Latency = ms(900)
	if v := Judge(a, testSettings); v.Label() != "does not block" || v.LateProbes != 1 || !strings.Contains(v.Words, "(1 of ") {
		t.Errorf("one hiccup: %s: %s", v.Label(), v.Words)
	}
}

func TestJudgeNeedsAGoodBaselineAndTwoAnswers(t *testing.T) {
	slow := targetBurst(mixedOne(), "/")
	slow.Baseline[1].Latency = ms(900)
	if v := Judge(slow, testSettings); v.BlocksLoop != nil || !strings.Contains(v.Words, "already slow before the burst") {
		t.Errorf("slow baseline: %s", v.Words)
	}
	failing := targetBurst(mixedOne(), "/")
	failing.Baseline[0] = Probe{Err: "connection reset", Cause: CauseReset}
	if v := Judge(failing, testSettings); v.BlocksLoop != nil || !strings.Contains(v.Words, "failed") {
		t.Errorf("failed baseline: %s", v.Words)
	}
	one := targetBurst(mixedOne(), "/")
	one.Requests[1].Status, one.Requests[1].Cause = 503, "HTTP 503"
	if v := Judge(one, testSettings); v.BlocksLoop != nil || !strings.Contains(v.Words, "only 1 of 2 requests to / got a 200") {
		t.Errorf("one answer: %s", v.Words)
	}
	// A slower but steady baseline raises the bar for "late".
	steady := targetBurst(asyncOne(), "/all-async")
	for i := range steady.Baseline {
		steady.Baseline[i].Latency = ms(150)
	}
	for i := range steady.Probes {
		steady.Probes[i].Latency = ms(250)
	}
	if v := Judge(steady, testSettings); v.LateAfter != ms(300) || v.Label() != "does not block" {
		t.Errorf("steady 150 ms baseline: late after %v, %s: %s", v.LateAfter, v.Label(), v.Words)
	}
}

func TestSummarizeATargetBurst(t *testing.T) {
	st := testSettings
	st.Target = "http://127.0.0.1:8000"
	s := Summarize(targetBurst(mixedOne(), "/"), st)
	if s.Verdict.Label() != "blocks" || s.Words != s.Verdict.Words || s.Scenario.Name() != "/" {
		t.Errorf("summary %+v", s)
	}
	if s.Model.Predicted != 0 {
		t.Error("a --target has no model: its delay is unknown")
	}
}

func TestJudgeTooShortToTell(t *testing.T) {
	r := Result{Scenario: Scenario{Concurrency: 2, Path: "/fast"}, Baseline: []Probe{{Latency: ms(1), Status: 200}},
		Requests: []Request{{Index: 1, Finished: ms(2), Status: 200}, {Index: 2, Finished: ms(3), Status: 200}},
		Probes:   []Probe{{Sent: 0, Latency: ms(1), Status: 200}}}
	v := Judge(r, testSettings)
	if v.BlocksLoop != nil || !strings.Contains(v.Words, "too short to tell") || !strings.Contains(v.Words, "--probe-interval") {
		t.Errorf("2 ms requests: %s: %s", v.Label(), v.Words)
	}
}
