package experiment

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func renderText(t *testing.T, rep *Report, color bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := RenderText(&b, rep, TextOptions{Color: color}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// row returns the line of the timeline of scenario name that starts with label.
func row(t *testing.T, out, name, label string) string {
	t.Helper()
	_, block, ok := strings.Cut(out, "\n"+name+" — ")
	if !ok {
		t.Fatalf("no timeline for %s in:\n%s", name, out)
	}
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), label) {
			return l
		}
	}
	t.Fatalf("no %q row for %s in:\n%s", label, name, block)
	return ""
}

func TestRenderTextWithoutColour(t *testing.T) {
	rep := testReport()
	rep.Results = rep.Results[:3] // mixed×1, async×1, mixed×2 (grabbed)
	out := renderText(t, rep, false)
	t.Logf("\n%s", out)

	if strings.Contains(out, "\x1b") {
		t.Error("escape sequences in output without colour")
	}
	for _, want := range []string{"mode", "workers", "conc.", "wall", "req p50", "req max", "health p50", "health max", "loops stalled"} {
		if !strings.Contains(strings.SplitN(out, "\n", 4)[2], want) {
			t.Errorf("table header lacks %q", want)
		}
	}
	// The table row of mixed×1: 8.02 s wall, p50 4.01 s, stalls summed.
	if !regexp.MustCompile(`(?m)^mixed\s+1\s+2\s+8\.02 s\s+4\.01 s\s+8\.02 s\s+.*8\.01 s \(2×\)$`).MatchString(out) {
		t.Error("no table row for mixed×1 with wall, p50, max and stalls")
	}
	if n := strings.Count(out, "\nmixed×1 — "); n != 1 {
		t.Errorf("%d timelines for mixed×1, want 1", n)
	}
	if n := len(regexp.MustCompile(`(?m)^\S+×\d+ — `).FindAllString(out, -1)); n != 3 {
		t.Errorf("%d timelines, want one per scenario (3)", n)
	}

	// mixed×1: request 1 processes from the start; request 2 queues for
	// half the time, then processes.
	r1 := row(t, out, "mixed×1", "req 1")
	r2 := row(t, out, "mixed×1", "req 2")
	if !strings.Contains(r1, "req 1 w1") || !strings.Contains(r1, string(glyphProcessing)) || strings.Contains(r1, string(glyphQueued)) {
		t.Errorf("mixed×1 request 1 row %q: want processing only", r1)
	}
	q, p := strings.IndexRune(r2, glyphQueued), strings.IndexRune(r2, glyphProcessing)
	if q < 0 || p < 0 || q > p || strings.Count(r2, string(glyphQueued)) < 20 {
		t.Errorf("mixed×1 request 2 row %q: want a long queued part, then processing", r2)
	}
	if h := row(t, out, "mixed×1", "health"); !strings.ContainsRune(h, glyphProbeLate) || !strings.HasSuffix(h, "79/81 late") {
		t.Errorf("mixed×1 health row %q: want late marks and 79/81 late", h)
	}
	// async×1: both process at once, health checks on time, shorter bars
	// on the shared axis.
	a2 := row(t, out, "async×1", "req 2")
	if strings.ContainsRune(a2, glyphQueued) || strings.Count(a2, string(glyphProcessing)) > strings.Count(r2, string(glyphProcessing))+2 {
		t.Errorf("async×1 request 2 row %q: want processing at once, on the same scale as mixed", a2)
	}
	if h := row(t, out, "async×1", "health"); strings.ContainsRune(h, glyphProbeLate) || !strings.ContainsRune(h, glyphProbeOK) {
		t.Errorf("async×1 health row %q: want only on-time marks", h)
	}
	// The axis in seconds, and the words and the model check.
	for _, want := range []string{"0s", "2s", "8s", "┼",
		"worker 1 accepted both connections and ran them one after the other while worker 2 idled",
		"⚠ deviates from the model by +100%: uneven accept",
		"✓ within ±25%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRenderTextColourOnlyWhenAsked(t *testing.T) {
	out := renderText(t, testReport(), true)
	if !strings.Contains(out, ansiGreen+string(glyphProcessing)) || !strings.Contains(out, ansiRed+string(glyphProbeLate)) {
		t.Error("coloured output lacks coloured glyphs")
	}
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(out, "")
	if plain != renderText(t, testReport(), false) {
		t.Error("coloured output differs from the plain one by more than escapes")
	}
}

func TestRenderTextFailedRequestAndManyRows(t *testing.T) {
	r := asyncOne()
	r.Scenario.Concurrency = 30
	for i := 3; i <= 30; i++ {
		r.Requests = append(r.Requests, Request{Index: i, Sent: 0, Started: ms(5), HasStart: true, Finished: ms(4000), Status: 200})
	}
	r.Requests[1] = Request{Index: 2, Sent: 0, Finished: ms(30), Err: "connection refused"}
	out := renderText(t, &Report{Settings: testSettings, Results: []Result{r}}, false)
	if !strings.Contains(row(t, out, "async×1", "req 2"), "failed: connection refused") {
		t.Error("failed request not marked")
	}
	if !strings.Contains(out, "… and 10 more requests") || strings.Contains(out, "req 21") {
		t.Errorf("want 20 rows then a count of the rest:\n%s", out)
	}
	if !strings.Contains(out, "1 failed") {
		t.Error("table does not count the failed request")
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ end, want time.Duration }{
		{ms(8020), 2 * time.Second},
		{ms(1200), 200 * time.Millisecond},
		{ms(4000), 500 * time.Millisecond},
		{ms(3), time.Millisecond},
	} {
		if got := niceStep(tc.end, 8); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.end, got, tc.want)
		}
	}
}

func renderHTML(t *testing.T, rep *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := RenderHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// xmlElements parses doc strictly as XML and returns every element with
// its attributes, in document order.
func xmlElements(t *testing.T, doc string) []xml.StartElement {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	var els []xml.StartElement
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return els
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			els = append(els, se.Copy())
		}
	}
}

// xmlText is the character data of doc, entities decoded.
func xmlText(t *testing.T, doc string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	var b strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok {
			b.Write(cd)
		}
	}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestRenderHTMLIsSelfContainedWithOneTimelinePerScenario(t *testing.T) {
	rep := testReport()
	// Text from outside (an error message, a request id) must be escaped.
	rep.Results[1].Requests[1].Status, rep.Results[1].Requests[1].Err = 0, `<script>alert("x")</script> & more`
	rep.Results[1].Requests[1].ID = `"><b onclick=x>`
	page := renderHTML(t, rep)

	if strings.Contains(page, "<script") || strings.Contains(page, "<b ") {
		t.Error("unescaped markup from the data")
	}
	for _, banned := range []string{"<link", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, banned) {
			t.Errorf("page refers to an outside resource: %q", banned)
		}
	}

	// Each SVG alone, as the brief asks, and then the whole page.
	svgs := regexp.MustCompile(`(?s)<svg class="timeline".*?</svg>`).FindAllString(page, -1)
	if len(svgs) != len(rep.Results) {
		t.Fatalf("%d timeline SVGs, want %d", len(svgs), len(rep.Results))
	}
	for i, svg := range svgs {
		els := xmlElements(t, svg)
		if els[0].Name.Local != "svg" || els[0].Name.Space != "http://www.w3.org/2000/svg" {
			t.Errorf("timeline %d: root %v", i, els[0].Name)
		}
		var bars, ticks int
		for _, e := range els {
			if e.Name.Local == "rect" && (attr(e, "class") == "p" || attr(e, "class") == "f") {
				bars++
			}
			if e.Name.Local == "text" && attr(e, "text-anchor") == "middle" {
				ticks++
			}
		}
		if bars != len(rep.Results[i].Requests) || ticks < 3 {
			t.Errorf("timeline %d: %d request bars, %d axis labels; want %d bars and an axis", i, bars, ticks, len(rep.Results[i].Requests))
		}
	}
	els := xmlElements(t, page)
	headings := 0
	for _, e := range els {
		if e.Name.Local == "h2" {
			headings++
		}
	}
	if headings != len(rep.Results) {
		t.Errorf("%d scenario headings, want %d", headings, len(rep.Results))
	}
	text := xmlText(t, page)
	if !strings.Contains(text, `<script>alert("x")</script> & more`) {
		t.Error("the escaped error text does not read back as itself")
	}
	for _, want := range []string{"mixed×1", "async×1", "threadpool×1", "queued", "processing", "health check late",
		"0s", "8s", "uneven accept", "8.02 s", "+100%", "loop blocked"} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, testReport()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Settings struct {
			Delay float64 `json:"delay_s"`
		} `json:"settings"`
		Scenarios []struct {
			Name      string  `json:"name"`
			Mode      string  `json:"mode"`
			Workers   int     `json:"workers"`
			Wall      float64 `json:"wall_s"`
			HealthMax float64 `json:"health_max_s"`
			Predicted float64 `json:"predicted_s"`
			Summary   string  `json:"summary"`
			Warning   string  `json:"warning"`
		} `json:"scenarios"`
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Settings.Delay != 2 || len(doc.Scenarios) != 4 {
		t.Fatalf("settings %+v, %d scenarios", doc.Settings, len(doc.Scenarios))
	}
	m := doc.Scenarios[0]
	if m.Name != "mixed×1" || m.Mode != "mixed" || m.Workers != 1 || m.Wall != 8.02 || m.Predicted != 8 || m.Summary == "" || m.Warning != "" {
		t.Errorf("mixed×1 summary %+v", m)
	}
	if !strings.Contains(doc.Scenarios[2].Warning, "uneven accept") {
		t.Errorf("mixed×2 warning %q", doc.Scenarios[2].Warning)
	}
	kinds := map[string]int{}
	for _, e := range doc.Events {
		if e.Scenario == "mixed×1" {
			kinds[e.Kind]++
		}
	}
	if kinds["sent"] != 2 || kinds["started"] != 2 || kinds["finished"] != 2 || kinds["probe"] != 81 || kinds["stall"] != 2 {
		t.Errorf("mixed×1 events by kind: %v", kinds)
	}
	for _, e := range doc.Events {
		if e.Kind == "finished" && e.Scenario == "mixed×1" && e.Index == 2 {
			if e.ID != uuid(2) || e.Worker != 1 || e.Status != 200 || e.Latency != 8.02 || e.T != 8.02 {
				t.Errorf("request 2's finished event: %+v", e)
			}
		}
	}
}

func TestProgressLine(t *testing.T) {
	s := Scenario{Mode: Mixed, Workers: 2, Concurrency: 2, Path: "/"}
	var plain bytes.Buffer
	p := NewProgressLine(&plain, false)
	p.Update(Progress{Index: 3, Total: 4, Scenario: s})
	p.Update(Progress{Index: 3, Total: 4, Scenario: s, Done: true, Took: ms(8100)})
	p.Close()
	if want := "scenario 3/4 mixed×2: running (2 requests, 2 workers)…\nscenario 3/4 mixed×2: done in 8.1 s\n"; plain.String() != want {
		t.Errorf("plain progress %q, want %q", plain.String(), want)
	}

	var tty bytes.Buffer
	p = NewProgressLine(&tty, true)
	p.Update(Progress{Index: 1, Total: 4, Scenario: Scenario{Mode: Threadpool, Workers: 1, Concurrency: 2, Path: "/"}})
	p.Update(Progress{Index: 2, Total: 4, Scenario: s})
	p.Close()
	p.Close() // idempotent
	out := tty.String()
	if strings.Contains(out, "\n") || strings.Contains(out, "\x1b") {
		t.Errorf("terminal progress %q: want one line rewritten with carriage returns only", out)
	}
	if !strings.Contains(out, "\rscenario 1/4 threadpool×1: ") || !strings.Contains(out, "\rscenario 2/4 mixed×2: ") {
		t.Errorf("terminal progress %q lacks a scenario", out)
	}
	// The shorter second line blanks what is left of the first, and Close
	// blanks the line for the report.
	if !strings.HasSuffix(out, "\r") || !regexp.MustCompile(`mixed×2: \d+ ms {5,}`).MatchString(out) {
		t.Errorf("terminal progress %q: stale text not blanked", out)
	}
}

// TestRenderAppFileRun: bursts to an app file's routes are named by route,
// and the model check, made for the built-in modes, is skipped with one
// line saying why, in every format.
func TestRenderAppFileRun(t *testing.T) {
	blocking, awaited := mixedOne(), asyncOne()
	blocking.Scenario = Scenario{Workers: 1, Concurrency: 2, Path: "/blocking"}
	awaited.Scenario = Scenario{Workers: 1, Concurrency: 2, Path: "/awaited"}
	st := testSettings
	st.App, st.Calls = &App{File: "app.toml", Routes: []string{"/blocking", "/awaited"}}, 0
	rep := &Report{Settings: st, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Results: []Result{blocking, awaited}}
	const why = "Model check skipped: its formulas are for the built-in app's modes (mixed, async, threadpool), not for the routes of app.toml"

	out := renderText(t, rep, false)
	lines := strings.Split(out, "\n")
	for _, want := range []string{
		"App app.toml (GET /blocking, /awaited), external API 2s per call · 2 requests fired at once per route · /healthcheck every 100ms",
		"route       workers conc.  wall     req p50",
		"/blocking         1     2  8.02 s",
		"/blocking×1 — requests ran one after the other",
		"/awaited×1 — both requests overlapped",
		why,
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("no line starting %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Model check (") || strings.Contains(out, "predicted") {
		t.Errorf("a model check for an app file:\n%s", out)
	}

	page := renderHTML(t, rep)
	if strings.Contains(page, "<th>model</th>") || !strings.Contains(xmlText(t, page), why+".") {
		t.Errorf("HTML report: model column, or no word on why it is missing")
	}

	var b bytes.Buffer
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Settings struct {
			App string `json:"app"`
		} `json:"settings"`
		Scenarios []map[string]any `json:"scenarios"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Settings.App != "app.toml" || len(doc.Scenarios) != 2 || doc.Scenarios[0]["name"] != "/blocking×1" || doc.Scenarios[0]["path"] != "/blocking" {
		t.Errorf("JSON settings %+v, scenarios %v", doc.Settings, doc.Scenarios)
	}
	for _, s := range doc.Scenarios {
		if _, ok := s["predicted_s"]; ok {
			t.Errorf("JSON scenario %v has a model prediction", s["name"])
		}
	}
}
