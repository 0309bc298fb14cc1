package experiment

import (
	"fmt"
	"io"
	"math"
	"time"
)

// Geometry of an open-loop card's SVG, in pixels.
const (
	openWidth   = 700
	openPlotX   = 56
	openPlotW   = 624
	openPlotTop = 10
	openPlotH   = 200
	openRowH    = 20
	routeColors = 8 // classes c0…c7
)

// renderOpenHTML draws an open-loop report: per scenario, latency over time
// (one dot per request, a colour per route, failures as red rings), the
// health checks and the liveness probe under it on the same time axis, and
// the per-route table; then the answer to --slo.
func renderOpenHTML(w io.Writer, rep *Report) error {
	o := *rep.Settings.Open
	tx := newAxis(rep, openPlotW)
	// Latency spans milliseconds to the timeout: a log scale, in whole
	// decades, shared by every card so that they compare at a glance.
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for _, r := range rep.Results {
		for _, q := range r.Requests {
			lo, hi = min(lo, q.Latency()), max(hi, q.Latency())
		}
	}
	for _, ob := range rep.SLO {
		lo, hi = min(lo, ob.Bound), max(hi, ob.Bound)
	}
	ys := newLogScale(lo, hi)

	v := openView{Settings: openSettingsLine(rep), Started: rep.Started.Format(time.RFC1123),
		Late: fmtWords(OpenLateAfter)}
	for i, p := range o.Mix.Paths() {
		v.Legend = append(v.Legend, legendEntry{Route: p, Class: fmt.Sprintf("c%d", i%routeColors)})
	}
	for _, r := range rep.Results {
		v.Cards = append(v.Cards, openCard(r, o, tx, ys, rep.SLO))
	}
	for _, a := range AnswerSLO(rep) {
		v.SLO = append(v.SLO, sloLine{Text: a.Line, Met: a.Workers > 0})
	}
	if err := openPageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

type openView struct {
	Settings, Started, Late string
	Legend                  []legendEntry
	Cards                   []openSVG
	SLO                     []sloLine
}

type legendEntry struct{ Route, Class string }

type sloLine struct {
	Text string
	Met  bool
}

type openSVG struct {
	Name, Words, Warning string
	Height               int
	PlotX, PlotEnd       float64
	PlotTop, PlotBottom  float64
	Dots                 []svgDot
	Fails                []svgDot
	YTicks               []svgYTick
	Bounds               []svgYTick // the --slo objectives' bounds
	HealthY              float64
	Probes               []svgProbe
	LiveY                float64
	Lives                []svgLive
	AxisY                float64
	Ticks                []svgTick
	Rows                 []routeRow
}

type svgDot struct {
	X, Y  float64
	Class string
	Title string // failures only: a title per dot would weigh the page down
}

type svgYTick struct {
	Y     float64
	Label string
	Major bool // a decade: labelled
}

// logScale maps latencies to the plot's height on a log scale from one
// whole decade to another.
type logScale struct{ lo, hi time.Duration }

func newLogScale(lo, hi time.Duration) logScale {
	decade := func(d time.Duration, up bool) time.Duration {
		e := math.Log10(float64(max(d, time.Millisecond)))
		if up {
			e = math.Ceil(e)
		} else {
			e = math.Floor(e)
		}
		return time.Duration(math.Pow(10, e))
	}
	s := logScale{lo: decade(lo, false)}
	// The top: the next 1, 2 or 5 times a power of ten, not a whole
	// decade that would leave most of the plot empty.
	for s.hi = s.lo; s.hi < hi || s.hi <= s.lo; {
		switch first := s.hi / decade(s.hi, false); first {
		case 1:
			s.hi *= 2
		case 2:
			s.hi = s.hi / 2 * 5
		default:
			s.hi *= 2
		}
	}
	return s
}

// y is the height above the plot's bottom, 0 to openPlotH.
func (s logScale) y(d time.Duration) float64 {
	d = min(max(d, s.lo), s.hi)
	return math.Log10(float64(d)/float64(s.lo)) / math.Log10(float64(s.hi)/float64(s.lo)) * openPlotH
}

// ticks: every decade and the top, labelled, and 2× and 5× between them.
func (s logScale) ticks() []svgYTick {
	var out []svgYTick
	for d := s.lo; d <= s.hi; d *= 10 {
		out = append(out, svgYTick{Label: fmtBound(d), Major: true, Y: s.y(d)})
		for _, m := range []time.Duration{2, 5} {
			if d*m < s.hi {
				out = append(out, svgYTick{Y: s.y(d * m)})
			}
		}
	}
	if last := out[len(out)-1]; !last.Major || last.Label != fmtBound(s.hi) {
		out = append(out, svgYTick{Label: fmtBound(s.hi), Major: true, Y: s.y(s.hi)})
	}
	return out
}

type svgLive struct {
	X       float64
	Failed  bool
	Restart bool // the kubelet would restart the worker set here
	Title   string
}

type routeRow struct {
	Route, Class, Sent, OK, P50, P90, P99, Max, Failed string
}

func openCard(r Result, o OpenLoop, tx axis, ys logScale, objs []Objective) openSVG {
	s := SummarizeOpen(r, o)
	bottom := float64(openPlotTop + openPlotH)
	y := func(d time.Duration) float64 { return bottom - ys.y(d) }
	x := func(t time.Duration) float64 { return openPlotX + float64(t)/float64(tx.end)*openPlotW }
	c := openSVG{
		Name: r.Scenario.Name(), Words: openWords(s, o), Warning: s.Warning(o),
		PlotX: openPlotX, PlotEnd: openPlotX + openPlotW, PlotTop: openPlotTop, PlotBottom: bottom,
	}
	class := map[string]string{}
	for i, p := range o.Mix.Paths() {
		class[p] = fmt.Sprintf("c%d", i%routeColors)
	}
	for _, q := range r.Requests {
		d := svgDot{X: x(q.Sent), Y: y(q.Latency()), Class: class[q.Route]}
		if q.OK() {
			c.Dots = append(c.Dots, d)
			continue
		}
		d.Class = "fail"
		d.Title = fmt.Sprintf("%s sent at %s failed after %s: %s", q.Route, fmtTable(q.Sent), fmtTable(q.Latency()), requestFailure(q))
		c.Fails = append(c.Fails, d)
	}
	for _, t := range ys.ticks() {
		t.Y = bottom - t.Y
		c.YTicks = append(c.YTicks, t)
	}
	for _, ob := range objs {
		c.Bounds = append(c.Bounds, svgYTick{Y: y(ob.Bound), Label: ob.String()})
	}

	c.HealthY = bottom + 8
	for _, p := range r.Probes {
		late := !p.OK() || p.Latency > OpenLateAfter
		title := fmt.Sprintf("health check sent at %s: ", fmtTable(p.Sent))
		if p.OK() {
			title += "answered in " + fmtTable(p.Latency)
		} else {
			title += "failed: " + probeFailure(p)
		}
		c.Probes = append(c.Probes, svgProbe{X: x(p.Sent), EndX: x(p.Sent + p.Latency),
			Y1: c.HealthY + 4, Y2: c.HealthY + openRowH - 4, Late: late, Title: title})
	}
	c.LiveY = c.HealthY + openRowH
	run := 0
	for _, p := range r.Liveness {
		l := svgLive{X: x(p.Sent), Failed: !LivenessOK(p)}
		if l.Failed {
			run++
			l.Title = fmt.Sprintf("liveness probe at %s failed (%d in a row)", fmtTable(p.Sent), run)
			if run == LivenessFailureThreshold {
				l.Restart, run = true, 0
				l.Title += ": the kubelet would restart the worker set"
			}
		} else {
			run = 0
			l.Title = fmt.Sprintf("liveness probe at %s answered in %s", fmtTable(p.Sent), fmtTable(p.Latency))
		}
		c.Lives = append(c.Lives, l)
	}
	c.AxisY = c.LiveY + openRowH + 4
	for t := time.Duration(0); t <= tx.end; t += tx.step {
		c.Ticks = append(c.Ticks, svgTick{X: x(t), Label: tickLabel(t)})
	}
	c.Height = int(c.AxisY) + svgAxisH

	rows := s.Routes
	if len(rows) > 1 {
		rows = append(rows[:len(rows):len(rows)], s.All)
	}
	for _, rs := range rows {
		row := routeRow{Route: rs.Route, Class: class[rs.Route], Sent: fmt.Sprint(rs.Sent), OK: fmt.Sprint(rs.OK),
			P50: latencyOr(rs, rs.P50), P90: latencyOr(rs, rs.P90), P99: latencyOr(rs, rs.P99), Max: latencyOr(rs, rs.Max),
			Failed: rs.FailedWords()}
		c.Rows = append(c.Rows, row)
	}
	return c
}

var openPageTemplate = newPage("open", `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>demo experiment: open-loop load</title>
<style>
{{template "css"}}</style>
</head>
<body>
<h1>Latency under open-loop load</h1>
<p class="sub">{{.Settings}}</p>
<div class="legend">
{{range .Legend}}<span><svg width="12" height="12"><circle class="{{.Class}}" cx="6" cy="6" r="4"/></svg>{{.Route}}</span>
{{end}}<span><svg width="12" height="12"><circle class="fail" cx="6" cy="6" r="4"/></svg>failed (timeout, refused, 5xx…)</span>
<span><svg width="8" height="14"><line class="ok" x1="4" y1="0" x2="4" y2="14"/></svg>health check in time</span>
<span><svg width="22" height="14"><line class="wait" x1="4" y1="7" x2="22" y2="7"/><line class="late" x1="4" y1="0" x2="4" y2="14"/></svg>health check late (&gt; {{.Late}}) or failed</span>
<span><svg width="12" height="12"><circle class="live-ok" cx="6" cy="6" r="3"/></svg>liveness probe passed</span>
<span><svg width="12" height="12"><circle class="live-fail" cx="6" cy="6" r="3"/></svg>failed</span>
<span><svg width="14" height="14"><text class="restart" x="1" y="12">↻</text></svg>would restart the worker set</span>
</div>
<div class="grid">
{{range .Cards}}{{$c := .}}<div class="card wide">
<h2>{{.Name}}</h2>
<p class="words">{{.Words}}</p>
<svg class="latency" xmlns="http://www.w3.org/2000/svg" width="700" height="{{.Height}}" viewBox="0 0 700 {{.Height}}" role="img" aria-label="latency over time of {{.Name}}">
{{range .YTicks}}<line class="grid-line" x1="{{f $c.PlotX}}" y1="{{f .Y}}" x2="{{f $c.PlotEnd}}" y2="{{f .Y}}"/>{{if .Major}}<text x="{{f (plus $c.PlotX -6)}}" y="{{f (plus .Y 4)}}" text-anchor="end">{{.Label}}</text>{{end}}
{{end}}{{range .Bounds}}<line class="bound" x1="{{f $c.PlotX}}" y1="{{f .Y}}" x2="{{f $c.PlotEnd}}" y2="{{f .Y}}"/><text class="bound-label" x="{{f (plus $c.PlotEnd -4)}}" y="{{f (plus .Y -3)}}" text-anchor="end">{{.Label}}</text>
{{end}}<text x="12" y="{{f (plus .PlotTop 100)}}" transform="rotate(-90 12 {{f (plus .PlotTop 100)}})" text-anchor="middle">latency (log)</text>
{{range .Dots}}<circle class="{{.Class}}" cx="{{f .X}}" cy="{{f .Y}}" r="1.6"/>
{{end}}{{range .Fails}}<circle class="fail" cx="{{f .X}}" cy="{{f .Y}}" r="2.4"><title>{{.Title}}</title></circle>
{{end}}<text x="4" y="{{f (plus .HealthY 14)}}">health</text>
{{range .Probes}}<g><title>{{.Title}}</title>{{if .Late}}<line class="wait" x1="{{f .X}}" y1="{{f (plus .Y1 6)}}" x2="{{f .EndX}}" y2="{{f (plus .Y1 6)}}"/>{{end}}<line class="{{if .Late}}late{{else}}ok{{end}}" x1="{{f .X}}" y1="{{f .Y1}}" x2="{{f .X}}" y2="{{f .Y2}}"/></g>
{{end}}<text x="4" y="{{f (plus .LiveY 14)}}">liveness</text>
{{range .Lives}}<g><title>{{.Title}}</title><circle class="{{if .Failed}}live-fail{{else}}live-ok{{end}}" cx="{{f .X}}" cy="{{f (plus $c.LiveY 10)}}" r="3"/>{{if .Restart}}<text class="restart" x="{{f (plus .X 4)}}" y="{{f (plus $c.LiveY 14)}}">↻</text>{{end}}</g>
{{end}}<line class="axis" x1="{{f .PlotX}}" y1="{{f .AxisY}}" x2="{{f .PlotEnd}}" y2="{{f .AxisY}}"/>
{{$ay := .AxisY}}{{range .Ticks}}<line class="axis" x1="{{f .X}}" y1="{{f $ay}}" x2="{{f .X}}" y2="{{f (plus $ay 4)}}"/><text x="{{f .X}}" y="{{f (plus $ay 16)}}" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>
{{with .Warning}}<p class="warn">{{.}}</p>{{end}}
<table>
<thead><tr><th>route</th><th>sent</th><th>ok</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>failed</th></tr></thead>
<tbody>
{{range .Rows}}<tr><td>{{if .Class}}<svg width="10" height="10"><circle class="{{.Class}}" cx="5" cy="5" r="4"/></svg> {{end}}{{.Route}}</td><td>{{.Sent}}</td><td>{{.OK}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P99}}</td><td>{{.Max}}</td><td>{{.Failed}}</td></tr>
{{end}}</tbody>
</table>
</div>
{{end}}</div>
{{range .SLO}}<p class="{{if .Met}}verdict-fine{{else}}verdict-unsure{{end}}">SLO {{.Text}}</p>
{{end}}<p class="foot">Latency counts from each request's scheduled arrival. Measured {{.Started}}.</p>
</body>
</html>
`)
