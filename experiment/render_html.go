package experiment

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// SVG geometry of one timeline, in pixels.
const (
	svgWidth    = 460
	svgPlotX    = 78 // left of the plot: request labels go before it
	svgPlotW    = 364
	svgRowH     = 20
	svgBarH     = 12
	svgTop      = 8
	svgAxisH    = 30
	maxHTMLRows = 40
)

// RenderHTML writes the report as one self-contained HTML page: inline CSS
// and SVG, no scripts, nothing fetched. The timelines sit side by side on a
// shared time axis, followed by a legend and the numbers. html/template
// escapes everything that came from outside (request ids, error texts).
//
// The page is also well-formed XML, so tools (and tests) can parse it.
func RenderHTML(w io.Writer, rep *Report) error {
	sums := rep.Summaries()
	ax := newAxis(rep, svgPlotW)
	if rep.Settings.Open != nil {
		return renderOpenHTML(w, rep)
	}
	v := htmlView{
		Settings: settingsLine(rep),
		Formula:  ModelFormula,
		Late:     fmtWords(rep.Settings.LateAfter()),
		Started:  rep.Started.Format(time.RFC1123),
		Target:   rep.Settings.Target != "",
		NoModel:  rep.Settings.ModelSkipped(),
	}
	if v.Target {
		v.Foot = strings.ReplaceAll(targetFootnote(rep), "\n", " ")
	}
	for i, r := range rep.Results {
		v.Scenarios = append(v.Scenarios, htmlScenario(r, sums[i], rep.Settings, ax))
		v.Rows = append(v.Rows, htmlRowOf(sums[i]))
	}
	if err := pageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

type htmlView struct {
	Settings, Formula, Late, Started string
	Target                           bool   // a --target run: verdicts, no model
	NoModel                          string // why there is no model check, if there is none
	Foot                             string // the verdict rule, for a --target
	Scenarios                        []svgScenario
	Rows                             []htmlRow
}

type svgScenario struct {
	Name, Words, Warning string
	Height               int
	Bars                 []svgBar
	More                 int // request rows not drawn
	HealthY              float64
	Probes               []svgProbe
	LateProbes, NProbes  int
	StallY               float64
	Stalls               []svgRect
	AxisY                float64
	Ticks                []svgTick
	PlotX, PlotEnd       float64
}

type svgBar struct {
	Label         string
	Y, TextY      float64
	QX, QW        float64 // queued part
	PX, PW        float64 // processing part
	Failed        bool
	Title         string
	Latency       string
	LatencyX      float64
	HasQueue      bool
	HasProcessing bool
	Blind         bool // a --target's request: in flight, start unknown
}

type svgProbe struct {
	X, EndX, Y1, Y2 float64
	Late            bool
	Title           string
}

type svgRect struct {
	X, W  float64
	Title string
}

type svgTick struct {
	X     float64
	Label string
}

type htmlRow struct {
	Name, Mode                                          string
	Workers, Concurrency                                int
	Wall, ReqP50, ReqMax, HealthP50, HealthMax, Stalled string
	Late                                                string
	Predicted, Deviation                                string
	Deviates                                            bool
	Failed                                              int
	Verdict, VerdictClass                               string
}

func htmlRowOf(s Summary) htmlRow {
	return htmlRow{
		Name: s.Scenario.Name(), Mode: string(s.Scenario.Mode),
		Workers: s.Scenario.Workers, Concurrency: s.Scenario.Concurrency,
		Wall:   fmtTable(s.Wall),
		ReqP50: statOr(s.Requests, s.Requests.P50), ReqMax: statOr(s.Requests, s.Requests.Max),
		HealthP50: statOr(s.Health, s.Health.P50), HealthMax: statOr(s.Health, s.Health.Max),
		Late:      fmt.Sprintf("%d/%d", s.LateProbes, s.Probes),
		Stalled:   fmtStalled(s.Stalled, s.Stalls),
		Predicted: fmtTable(s.Model.Predicted), Deviation: s.Model.Percent(),
		Deviates: s.Model.Deviates(), Failed: s.Failed,
		Verdict: s.Verdict.Label(), VerdictClass: verdictClass(s.Verdict),
	}
}

func verdictClass(v Verdict) string {
	switch {
	case v.BlocksLoop == nil:
		return "verdict-unsure"
	case *v.BlocksLoop:
		return "verdict-blocks"
	}
	return "verdict-fine"
}

func (a axis) x(t time.Duration) float64 {
	return svgPlotX + float64(t)/float64(a.end)*svgPlotW
}

func htmlScenario(r Result, s Summary, st Settings, ax axis) svgScenario {
	sc := svgScenario{
		Name: r.Scenario.Name(), Words: s.Words, Warning: s.Model.Warning(),
		PlotX: svgPlotX, PlotEnd: svgPlotX + svgPlotW,
	}
	y := float64(svgTop)
	for i, q := range r.Requests {
		if i == maxHTMLRows {
			sc.More = len(r.Requests) - maxHTMLRows
			break
		}
		start := q.Sent
		if q.HasStart {
			start = min(max(q.Started, q.Sent), q.Finished)
		}
		b := svgBar{
			Label: fmt.Sprintf("req %d", q.Index),
			Y:     y + (svgRowH-svgBarH)/2, TextY: y + svgRowH/2 + 4,
			QX: ax.x(q.Sent), QW: ax.x(start) - ax.x(q.Sent),
			PX: ax.x(start), PW: max(ax.x(q.Finished)-ax.x(start), 1),
			Failed:   !q.OK(),
			Latency:  fmtTable(q.Latency()),
			LatencyX: ax.x(q.Finished) + 4,
		}
		b.HasQueue, b.HasProcessing, b.Blind = b.QW >= 0.5, true, st.Target != ""
		if q.Worker > 0 {
			b.Label += fmt.Sprintf(" · w%d", q.Worker)
		}
		b.Title = fmt.Sprintf("request %d %s: sent at %s, ", q.Index, q.ID, fmtTable(q.Sent))
		if q.HasStart {
			b.Title += fmt.Sprintf("started processing at %s on worker %d, ", fmtTable(q.Started), q.Worker)
		}
		if q.OK() {
			b.Title += fmt.Sprintf("answered at %s (%s)", fmtTable(q.Finished), fmtTable(q.Latency()))
		} else {
			b.Title += fmt.Sprintf("failed at %s: %s", fmtTable(q.Finished), requestFailure(q))
			b.Latency = "failed"
		}
		// Keep the latency label inside the picture.
		b.LatencyX = min(b.LatencyX, float64(svgWidth-40))
		sc.Bars = append(sc.Bars, b)
		y += svgRowH
	}
	if sc.More > 0 {
		y += svgRowH
	}

	sc.HealthY = y
	late := s.lateAfter(st)
	sc.NProbes, sc.LateProbes = len(r.Probes), r.LateProbes(late)
	for _, p := range r.Probes {
		isLate := !p.OK() || p.Latency > late
		title := fmt.Sprintf("health check sent at %s: ", fmtTable(p.Sent))
		if p.OK() {
			title += "answered in " + fmtTable(p.Latency)
		} else {
			title += "failed: " + probeFailure(p)
		}
		sc.Probes = append(sc.Probes, svgProbe{
			X: ax.x(p.Sent), EndX: ax.x(p.Sent + p.Latency),
			Y1: y + 4, Y2: y + svgRowH - 4, Late: isLate, Title: title,
		})
	}
	y += svgRowH

	if len(r.Stalls) > 0 {
		sc.StallY = y
		for _, s := range r.Stalls {
			sc.Stalls = append(sc.Stalls, svgRect{
				X: ax.x(s.Start), W: max(ax.x(s.Start+s.Duration)-ax.x(s.Start), 1),
				Title: fmt.Sprintf("worker %d's event loop blocked %s by %s (request %s)", s.Worker, fmtTable(s.Duration), s.Cause, s.RequestID),
			})
		}
		y += svgRowH
	}

	sc.AxisY = y + 4
	for t := time.Duration(0); t <= ax.end; t += ax.step {
		sc.Ticks = append(sc.Ticks, svgTick{X: ax.x(t), Label: tickLabel(t)})
	}
	sc.Height = int(y) + svgAxisH
	return sc
}

func probeFailure(p Probe) string {
	if p.Err != "" {
		return p.Err
	}
	return fmt.Sprintf("status %d", p.Status)
}

// pageCSS is the style every page shares.
const pageCSS = `{{define "css"}}body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d1d1f; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: #555; margin: 0 0 16px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 12px; width: 460px; }
.card h2 { font-size: 16px; margin: 0 0 2px; }
.words { margin: 0 0 8px; color: #333; }
.warn { color: #a15c00; margin: 6px 0 0; }
svg text { font-size: 11px; fill: #444; }
.p { fill: #2e7d32; }
.q { fill: #f0b429; }
.f { fill: #c62828; }
.ok { stroke: #2e7d32; stroke-width: 1.5; }
.late { stroke: #c62828; stroke-width: 1.5; }
.wait { stroke: #c62828; stroke-opacity: 0.18; stroke-width: 3; }
.stall { fill: #c62828; fill-opacity: 0.45; }
.axis { stroke: #999; stroke-width: 1; }
.grid-line { stroke: #eee; stroke-width: 1; }
.legend { display: flex; flex-wrap: wrap; gap: 18px; margin: 16px 0; color: #333; }
.legend svg { vertical-align: middle; margin-right: 4px; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.bad { color: #a15c00; font-weight: 600; }
.foot { color: #777; font-size: 12px; margin-top: 16px; }
.w { fill: #f0b429; fill-opacity: 0.6; }
.c0 { fill: #1f77b4; } .c1 { fill: #2ca02c; } .c2 { fill: #9467bd; } .c3 { fill: #ff7f0e; }
.c4 { fill: #17becf; } .c5 { fill: #8c564b; } .c6 { fill: #e377c2; } .c7 { fill: #7f7f7f; }
.fail { fill: none; stroke: #c62828; stroke-width: 1.2; }
.live-ok { fill: #2e7d32; } .live-fail { fill: #c62828; }
.restart { fill: #c62828; font-weight: 700; }
.bound { stroke: #a15c00; stroke-width: 1; stroke-dasharray: 4 3; }
svg text.bound-label { fill: #a15c00; }
.wide { width: 700px; }
.verdict-blocks { color: #c62828; font-weight: 600; }
.verdict-fine { color: #2e7d32; font-weight: 600; }
.verdict-unsure { color: #a15c00; font-weight: 600; }
{{end}}`

// newPage parses a page template with the shared style and helpers.
func newPage(name, text string) *template.Template {
	return template.Must(template.New(name).Funcs(template.FuncMap{
		"f":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"plus": func(a, b float64) float64 { return a + b },
	}).Parse(pageCSS + text))
}

var pageTemplate = newPage("page", `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>demo experiment: blocking code in an event loop</title>
<style>
{{template "css"}}</style>
</head>
<body>
<h1>{{if .Target}}Does it block the event loop? Measured from outside{{else}}Blocking code in an event loop, measured{{end}}</h1>
<p class="sub">{{.Settings}}</p>
<div class="grid">
{{range .Scenarios}}{{$sc := .}}<div class="card">
<h2>{{.Name}}</h2>
<p class="words">{{.Words}}</p>
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="460" height="{{.Height}}" viewBox="0 0 460 {{.Height}}" role="img" aria-label="timeline of {{.Name}}">
{{range .Ticks}}<line class="grid-line" x1="{{f .X}}" y1="0" x2="{{f .X}}" y2="{{f $sc.AxisY}}"/>
{{end}}{{range .Bars}}<text x="4" y="{{f .TextY}}">{{.Label}}</text>
<g><title>{{.Title}}</title>{{if .HasQueue}}<rect class="q" x="{{f .QX}}" y="{{f .Y}}" width="{{f .QW}}" height="12"/>{{end}}<rect class="{{if .Failed}}f{{else if .Blind}}w{{else}}p{{end}}" x="{{f .PX}}" y="{{f .Y}}" width="{{f .PW}}" height="12"/></g>
<text x="{{f .LatencyX}}" y="{{f .TextY}}">{{.Latency}}</text>
{{end}}{{if .More}}<text x="4" y="{{f .HealthY}}">… {{.More}} more requests</text>
{{end}}<text x="4" y="{{f (plus .HealthY 14)}}">health</text>
{{range .Probes}}<g><title>{{.Title}}</title>{{if .Late}}<line class="wait" x1="{{f .X}}" y1="{{f (plus .Y1 6)}}" x2="{{f .EndX}}" y2="{{f (plus .Y1 6)}}"/>{{end}}<line class="{{if .Late}}late{{else}}ok{{end}}" x1="{{f .X}}" y1="{{f .Y1}}" x2="{{f .X}}" y2="{{f .Y2}}"/></g>
{{end}}{{if .Stalls}}<text x="4" y="{{f (plus .StallY 14)}}">loop blocked</text>
{{range .Stalls}}<rect class="stall" x="{{f .X}}" y="{{f (plus $sc.StallY 4)}}" width="{{f .W}}" height="12"><title>{{.Title}}</title></rect>
{{end}}{{end}}<line class="axis" x1="{{f .PlotX}}" y1="{{f .AxisY}}" x2="{{f .PlotEnd}}" y2="{{f .AxisY}}"/>
{{$ay := .AxisY}}{{range .Ticks}}<line class="axis" x1="{{f .X}}" y1="{{f $ay}}" x2="{{f .X}}" y2="{{f (plus $ay 4)}}"/><text x="{{f .X}}" y="{{f (plus $ay 16)}}" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>
{{with .Warning}}<p class="warn">{{.}}</p>{{end}}
</div>
{{end}}</div>
<div class="legend">
{{if .Target}}<span><svg width="22" height="12"><rect class="w" width="22" height="12"/></svg>in flight (when the server began it is not visible from outside)</span>
{{else}}<span><svg width="22" height="12"><rect class="p" width="22" height="12"/></svg>processing (after the server logged “started processing”)</span>
<span><svg width="22" height="12"><rect class="q" width="22" height="12"/></svg>queued (sent, not started yet)</span>{{end}}
<span><svg width="8" height="14"><line class="ok" x1="4" y1="0" x2="4" y2="14"/></svg>health check answered in time</span>
<span><svg width="22" height="14"><line class="wait" x1="4" y1="7" x2="22" y2="7"/><line class="late" x1="4" y1="0" x2="4" y2="14"/></svg>health check late ({{if .Target}}see below{{else}}&gt; {{.Late}}{{end}}) or failed, with how long it waited</span>
{{if not .Target}}<span><svg width="22" height="12"><rect class="stall" width="22" height="12"/></svg>event loop blocked</span>
{{end}}</div>
{{if .Target}}<table>
<thead><tr><th>route</th><th>concurrency</th><th>wall</th><th>request p50</th><th>request max</th><th>health p50</th><th>health max</th><th>late probes</th><th>verdict</th></tr></thead>
<tbody>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.Concurrency}}</td><td>{{.Wall}}{{if .Failed}} ({{.Failed}} failed){{end}}</td><td>{{.ReqP50}}</td><td>{{.ReqMax}}</td><td>{{.HealthP50}}</td><td>{{.HealthMax}}</td><td>{{.Late}}</td><td class="{{.VerdictClass}}">{{.Verdict}}</td></tr>
{{end}}</tbody>
</table>
<p class="foot">{{.Foot}} Measured {{.Started}}.</p>
{{else}}<table>
<thead><tr><th>scenario</th><th>workers</th><th>concurrency</th><th>wall</th><th>request p50</th><th>request max</th><th>health p50</th><th>health max</th><th>late probes</th><th>loops stalled</th>{{if not .NoModel}}<th>model</th><th>deviation</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.Workers}}</td><td>{{.Concurrency}}</td><td>{{.Wall}}{{if .Failed}} ({{.Failed}} failed){{end}}</td><td>{{.ReqP50}}</td><td>{{.ReqMax}}</td><td>{{.HealthP50}}</td><td>{{.HealthMax}}</td><td>{{.Late}}</td><td>{{.Stalled}}</td>{{if not $.NoModel}}<td>{{.Predicted}}</td><td{{if .Deviates}} class="bad"{{end}}>{{.Deviation}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
<p class="foot">{{if .NoModel}}{{.NoModel}}.{{else}}Model: {{.Formula}}.{{end}} Measured {{.Started}}.</p>
{{end}}</body>
</html>
`)
