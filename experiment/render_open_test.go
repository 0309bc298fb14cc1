package experiment

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// openReport: 20 requests/s for 1 s over /mixed=1,/all-async=3 on 1 and 2
// workers; on 1 worker the loop stalls and the liveness probe fails.
func openReport() *Report {
	o := &OpenLoop{Rate: 20, Duration: time.Second, Mix: Mix{{"/mixed", 1}, {"/all-async", 3}}, Seed: 1}
	st := testSettings
	st.Open = o
	mk := func(workers int, slow bool) Result {
		r := Result{Scenario: Scenario{Workers: workers, Path: "/"}, PeakInFlight: 7}
		for i, a := range o.Schedule() {
			lat := ms(300)
			if slow {
				lat = ms(300 + 100*i)
			}
			q := Request{Index: i + 1, Route: o.Mix[a.route].Path, ID: uuid(i), Worker: 1, Scheduled: a.at, Sent: a.at + ms(1),
				Started: a.at + ms(2), HasStart: true, Finished: a.at + lat, Status: 200}
			if slow && i >= 18 {
				q.Status, q.Cause, q.Err, q.HasStart = 0, CauseTimeout, "read response: i/o timeout", false
			}
			r.Requests = append(r.Requests, q)
			r.Wall = max(r.Wall, q.Finished)
		}
		r.Probes = probesUntil(r.Wall, 0, ms(2))
		live := []bool{false, false}
		if slow {
			r.Probes = probesUntil(r.Wall, r.Wall, ms(2))
			live = []bool{true, true, true}
		}
		r.Liveness = openResult(workers, nil, 0, live...).Liveness
		return r
	}
	objs, _ := ParseSLO("p99<1s")
	return &Report{Settings: st, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), SLO: objs,
		Results: []Result{mk(1, true), mk(2, false)}}
}

func TestRenderOpenLoopText(t *testing.T) {
	out := renderText(t, openReport(), false)
	t.Logf("\n%s", out)
	for _, want := range []string{
		"open loop: 20 requests/s for 1s (Poisson arrivals, seed 1) to /mixed=1,/all-async=3",
		"\n1 worker — 20 sent at 20.0/s (generator lag p99 1 ms, at most 7 in flight)",
		"liveness probe failed 3 of 3 times → 1 restart",
		"\n2 workers — ", "liveness probe failed 0 of 2 times: no restart",
		"SLO p99<1s with no liveness restart: fewest workers that meet it: 2 (p99 300 ms, 0 liveness restarts)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The route table: sent, ok, percentiles, failures by cause.
	if !regexp.MustCompile(`(?m)^  route\s+sent\s+ok\s+p50\s+p90\s+p99\s+max\s+failed$`).MatchString(out) {
		t.Error("no route table header")
	}
	if !regexp.MustCompile(`(?m)^  all\s+20\s+18\s+.*\s2 timeout$`).MatchString(out) {
		t.Error("no 'all' row counting the 2 timeouts")
	}
	if !regexp.MustCompile(`(?m)^  /all-async\s+\d+\s+\d+\s+300 ms\s+300 ms\s+300 ms\s+300 ms\s+0$`).MatchString(out) {
		t.Error("2 workers: no /all-async row at 300 ms without failures")
	}
	if strings.Contains(out, "Model check") {
		t.Error("the burst's model has no say in an open-loop run")
	}
}

func TestRenderOpenLoopHTML(t *testing.T) {
	rep := openReport()
	rep.Results[0].Requests[18].Err = `<script>x</script>`
	page := renderHTML(t, rep)
	if strings.Contains(page, "<script") {
		t.Error("unescaped markup from the data")
	}
	svgs := regexp.MustCompile(`(?s)<svg class="latency".*?</svg>`).FindAllString(page, -1)
	if len(svgs) != 2 {
		t.Fatalf("%d latency plots, want one per scenario", len(svgs))
	}
	for i, svg := range svgs {
		els := xmlElements(t, svg)
		var dots, fails, lives int
		for _, e := range els {
			switch c := attr(e, "class"); {
			case e.Name.Local == "circle" && (c == "c0" || c == "c1"):
				dots++
			case e.Name.Local == "circle" && c == "fail":
				fails++
			case e.Name.Local == "circle" && strings.HasPrefix(c, "live-"):
				lives++
			}
		}
		r := rep.Results[i]
		if dots+fails != len(r.Requests) || fails != r.Failed() || lives != len(r.Liveness) {
			t.Errorf("plot %d: %d dots, %d failures, %d liveness marks; want one dot per request (%d), %d failed, %d probes",
				i, dots, fails, lives, len(r.Requests), r.Failed(), len(r.Liveness))
		}
	}
	if n := strings.Count(page, "↻</text>"); n != 2 { // the legend's and one restart
		t.Errorf("%d restart marks, want the legend's and one", n)
	}
	if !strings.Contains(page, "SLO p99&lt;1s with no liveness restart: fewest workers that meet it: 2") {
		t.Error("page lacks the SLO answer")
	}
	xmlElements(t, page) // well-formed as a whole
}

func TestWriteJSONOpenLoop(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, openReport()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Settings struct {
			Rate float64 `json:"rate"`
			Mix  string  `json:"mix"`
			Seed *uint64 `json:"seed"`
		} `json:"settings"`
		Scenarios []struct {
			Name     string `json:"name"`
			Kind     string `json:"kind"`
			Routes   []jsonRoute
			Liveness jsonLiveness  `json:"liveness"`
			SLOMet   *bool         `json:"slo_met"`
			Requests []jsonRequest `json:"requests"`
			Checks   []jsonProbe   `json:"health_checks"`
			Achieved float64       `json:"achieved_rate"`
		} `json:"scenarios"`
		SLO []jsonSLO `json:"slo"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Settings.Rate != 20 || doc.Settings.Mix != "/mixed=1,/all-async=3" || doc.Settings.Seed == nil || *doc.Settings.Seed != 1 {
		t.Errorf("settings %+v", doc.Settings)
	}
	one := doc.Scenarios[0]
	if one.Kind != "open-loop" || one.Liveness.Restarts != 1 || one.SLOMet == nil || *one.SLOMet || one.Achieved != 20 {
		t.Errorf("1 worker: %+v", one)
	}
	if len(one.Routes) != 2 || one.Routes[0].Route != "/mixed" || one.Routes[0].Sent+one.Routes[1].Sent != 20 {
		t.Errorf("routes %+v", one.Routes)
	}
	if len(one.Requests) != 20 || one.Requests[0].Started == nil || one.Requests[19].Started != nil || one.Requests[19].Cause != CauseTimeout {
		t.Errorf("requests: %d, first %+v, last %+v", len(one.Requests), one.Requests[0], one.Requests[19])
	}
	kinds := map[string]int{}
	for _, p := range one.Checks {
		kinds[p.Kind]++
	}
	if kinds["health"] == 0 || kinds["liveness"] != 3 {
		t.Errorf("health checks by kind %v", kinds)
	}
	if len(doc.SLO) != 1 || doc.SLO[0].Workers != 2 {
		t.Errorf("slo %+v", doc.SLO)
	}
}

func targetReport() *Report {
	st := testSettings
	st.Target = "http://127.0.0.1:8000"
	return &Report{Settings: st, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Results: []Result{
		targetBurst(mixedOne(), "/"), targetBurst(asyncOne(), "/all-async"), targetBurst(mixedTwoGrabbed(), "/mixed"),
	}}
}

func TestRenderTargetText(t *testing.T) {
	out := renderText(t, targetReport(), false)
	t.Logf("\n%s", out)
	for _, re := range []string{
		`(?m)^route\s+conc\.\s+wall\s+req p50\s+req max\s+health p50\s+health max\s+verdict$`,
		`(?m)^/\s+2\s+8\.02 s\s+.*blocks the loop$`,
		`(?m)^/all-async\s+2\s+.*does not block$`,
		`(?m)^/mixed\s+2\s+.*inconclusive$`,
		`(?m)^/ — blocks the loop: health checks waited up to 8\.0 s while 2 requests to / were in flight; they finished at 4\.0 s and 8\.0 s, one after the other$`,
		`--concurrency`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	if strings.Contains(out, "Model check") || strings.ContainsRune(out, glyphQueued) || !strings.ContainsRune(out, glyphInFlight) {
		t.Error("a --target: no model, no queued part (its start is unknown), requests drawn in flight")
	}
}

func TestWriteJSONTargetVerdicts(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, targetReport()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []map[string]any `json:"scenarios"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := []any{true, false, nil}
	for i, s := range doc.Scenarios {
		v, present := s["blocks_loop"]
		if !present || v != want[i] {
			t.Errorf("scenario %v: blocks_loop %v (present %v), want %v", s["name"], v, present, want[i])
		}
		if _, ok := s["predicted_s"]; ok {
			t.Errorf("scenario %v: a model prediction for a --target", s["name"])
		}
		for _, q := range s["requests"].([]any) {
			if q.(map[string]any)["started_s"] != nil {
				t.Errorf("scenario %v: a start time for a --target", s["name"])
			}
		}
	}
	if !strings.Contains(b.String(), `"verdict": "inconclusive"`) {
		t.Error("no inconclusive verdict in words")
	}
	page := renderHTML(t, targetReport())
	if !strings.Contains(page, `<td class="verdict-blocks">blocks</td>`) || !strings.Contains(page, `class="w"`) || strings.Contains(page, "Model:") {
		t.Error("HTML of a --target: want verdict cells, in-flight bars and no model")
	}
}

func TestLogScale(t *testing.T) {
	s := newLogScale(ms(3), 10100*time.Millisecond)
	if s.lo != ms(1) || s.hi != 20*time.Second {
		t.Errorf("scale from 3 ms to 10.1 s: %v to %v, want 1ms to 20s", s.lo, s.hi)
	}
	if s.y(ms(1)) != 0 || s.y(20*time.Second) != openPlotH || s.y(time.Hour) != openPlotH || s.y(0) != 0 {
		t.Error("the scale's ends")
	}
	if a, b := s.y(ms(10))-s.y(ms(1)), s.y(ms(100))-s.y(ms(10)); math.Abs(a-b) > 1e-9 {
		t.Errorf("decades %.2f and %.2f apart, want equal", a, b)
	}
	var labels []string
	for _, tk := range s.ticks() {
		if tk.Major {
			labels = append(labels, tk.Label)
		}
	}
	if strings.Join(labels, " ") != "1ms 10ms 100ms 1s 10s 20s" {
		t.Errorf("labels %v", labels)
	}
	if s := newLogScale(ms(200), ms(400)); s.lo != ms(100) || s.hi != ms(500) {
		t.Errorf("200 to 400 ms: %v to %v", s.lo, s.hi)
	}
}

func TestRouteStatsCountFailuresByCause(t *testing.T) {
	reqs := []Request{
		{Status: 200, Finished: ms(10)},
		{Cause: CauseTimeout, Err: "i/o timeout"},
		{Status: 503, Cause: "HTTP 503"},
		{Cause: CauseTimeout, Err: "i/o timeout"},
		{Status: 500}, // no cause recorded: still a failure
	}
	s := newRouteStats("/x", reqs)
	if s.Sent != 5 || s.OK != 1 || s.Failed() != 4 || s.P99 != ms(10) {
		t.Errorf("stats %+v", s)
	}
	if got := s.FailedWords(); got != "4 (2 timeout, 1 HTTP 503, 1 bad response)" {
		t.Errorf("FailedWords %q", got)
	}
	if got := newRouteStats("/y", reqs[:2]).FailedWords(); got != "1 timeout" {
		t.Errorf("one cause: %q", got)
	}
	if got := newRouteStats("/z", reqs[:1]).FailedWords(); got != "0" {
		t.Errorf("none: %q", got)
	}
}
