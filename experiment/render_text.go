package experiment

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ColorEnabled reports whether output to f may use ANSI colours: only on a
// terminal, and never when NO_COLOR is set (https://no-color.org) or the
// terminal is dumb.
func ColorEnabled(f *os.File) bool {
	return IsTerminal(f) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// TextOptions tunes RenderText.
type TextOptions struct {
	Color bool // ANSI colours; without them the drawing still reads
	Width int  // columns of the timeline itself; 0 means 56
}

// Timeline glyphs: distinct shapes first, colour only on top.
const (
	glyphProcessing = '█'
	glyphQueued     = '░'
	glyphProbeOK    = '·'
	glyphProbeLate  = '!'
	glyphInFlight   = '▒' // a --target's request: sent, not answered yet
)

const (
	ansiReset = "\x1b[0m"
	ansiGreen = "\x1b[32m"
	ansiAmber = "\x1b[33m"
	ansiRed   = "\x1b[1;31m"
	ansiDim   = "\x1b[2m"
	ansiBold  = "\x1b[1m"
)

// maxTextRows bounds the request rows drawn per scenario in the terminal.
const maxTextRows = 20

// RenderText writes the report for a terminal: the numbers table, one
// timeline per scenario with its plain-words line, and the model check.
func RenderText(w io.Writer, rep *Report, opt TextOptions) error {
	if opt.Width <= 0 {
		opt.Width = 56
	}
	st := rep.Settings
	tw := &textWriter{w: w, color: opt.Color}
	if st.Open != nil {
		renderOpen(tw, rep)
		return tw.err
	}
	sums := rep.Summaries()

	tw.printf("%s\n\n", settingsLine(rep))
	if st.Target != "" {
		renderTargetTable(tw, sums)
	} else {
		renderTable(tw, sums, st.App != nil)
	}

	ax := newAxis(rep, opt.Width)
	for i, r := range rep.Results {
		tw.printf("\n")
		tw.style(ansiBold, r.Scenario.Name())
		tw.printf(" — %s\n", sums[i].Words)
		renderTimeline(tw, r, st, sums[i].lateAfter(st), ax)
	}
	tw.printf("\n")
	if st.Target != "" {
		tw.style(ansiDim, fmt.Sprintf("%c in flight (when the server began it is not visible from outside)  %c health check answered in time  %c health check late or failed",
			glyphInFlight, glyphProbeOK, glyphProbeLate))
		tw.printf("\n\n%s\n", targetFootnote(rep))
		return tw.err
	}
	tw.style(ansiDim, fmt.Sprintf("%c processing  %c queued (sent, not started yet)  %c health check answered in time  %c health check late (> %s) or failed",
		glyphProcessing, glyphQueued, glyphProbeOK, glyphProbeLate, fmtWords(st.LateAfter())))
	if why := st.ModelSkipped(); why != "" {
		tw.printf("\n\n%s\n", why)
		return tw.err
	}
	tw.printf("\n\nModel check (%s)\n", ModelFormula)
	for _, s := range sums {
		m := s.Model
		tw.printf("  %-14s predicted %-8s measured %-8s %5s  ", s.Scenario.Name(), fmtTable(m.Predicted), fmtTable(m.Measured), m.Percent())
		if m.Deviates() {
			tw.style(ansiAmber, m.Warning())
		} else {
			tw.style(ansiGreen, "✓ within ±25%")
		}
		tw.printf("\n")
	}
	return tw.err
}

func settingsLine(rep *Report) string {
	st := rep.Settings
	if st.Open != nil {
		return openSettingsLine(rep)
	}
	conc := 0
	if len(rep.Results) > 0 {
		conc = rep.Results[0].Scenario.Concurrency
	}
	if st.Target != "" {
		return fmt.Sprintf("Target %s · %d requests fired at once per route, after %d health checks one after the other · %s every %s",
			st.Target, conc, burstBaselineProbes, st.healthPath(), st.ProbeInterval)
	}
	if st.App != nil {
		return fmt.Sprintf("%s · %d requests fired at once per route · /healthcheck every %s", st.App.words(st), conc, st.ProbeInterval)
	}
	return fmt.Sprintf("External API: %s per call, %d calls per request · %d requests fired at once · /healthcheck every %s",
		st.Delay, st.Calls, conc, st.ProbeInterval)
}

// words names the app file and the external API its calls reach:
// "App app.toml (GET /blocking, /awaited), external API 300ms per call".
func (a *App) words(st Settings) string {
	return fmt.Sprintf("App %s (GET %s), external API %s per call", a.File, strings.Join(a.Routes, ", "), st.Delay)
}

// renderTargetTable is the table of --target bursts: one row per route,
// ending in the verdict.
func renderTargetTable(tw *textWriter, sums []Summary) {
	width := len("route")
	for _, s := range sums {
		width = max(width, len(s.Scenario.Path))
	}
	head := fmt.Sprintf("%-*s %5s  %-8s %-8s %-8s %-10s %-10s %s",
		width, "route", "conc.", "wall", "req p50", "req max", "health p50", "health max", "verdict")
	tw.style(ansiBold, head)
	tw.printf("\n")
	for _, s := range sums {
		tw.printf("%-*s %5d  %-8s %-8s %-8s %-10s %-10s ",
			width, s.Scenario.Path, s.Scenario.Concurrency, fmtTable(s.Wall),
			statOr(s.Requests, s.Requests.P50), statOr(s.Requests, s.Requests.Max),
			statOr(s.Health, s.Health.P50), statOr(s.Health, s.Health.Max))
		switch label := s.Verdict.Label(); label {
		case "blocks":
			tw.style(ansiRed, "blocks the loop")
		case "does not block":
			tw.style(ansiGreen, "does not block")
		default:
			tw.style(ansiAmber, label)
		}
		if s.Failed > 0 {
			tw.style(ansiRed, fmt.Sprintf("  %d failed", s.Failed))
		}
		tw.printf("\n")
	}
}

// targetFootnote reminds what a "does not block" rests on.
func targetFootnote(rep *Report) string {
	conc := 0
	if len(rep.Results) > 0 {
		conc = rep.Results[0].Scenario.Concurrency
	}
	return fmt.Sprintf("A route blocks the loop when health checks answered in time before the burst are late while its requests are in flight\n"+
		"and the requests finish one after the other; when the two disagree the verdict is inconclusive. With more workers than\n"+
		"the %d requests of a burst, idle workers can hide a blocked one: fire more requests than the server has workers (--concurrency).", conc)
}

// renderTable is the table of local bursts: one row per scenario, named by
// its mode, or by its route when the servers serve an app file.
func renderTable(tw *textWriter, sums []Summary, app bool) {
	first, width := "mode", 11
	name := func(s Scenario) string { return string(s.Mode) }
	if app {
		first, name = "route", func(s Scenario) string { return s.Path }
		for _, s := range sums {
			width = max(width, len(s.Scenario.Path))
		}
	}
	head := fmt.Sprintf("%-*s %7s %5s  %-8s %-8s %-8s %-10s %-10s %s",
		width, first, "workers", "conc.", "wall", "req p50", "req max", "health p50", "health max", "loops stalled")
	tw.style(ansiBold, head)
	tw.printf("\n")
	for _, s := range sums {
		tw.printf("%-*s %7d %5d  %-8s %-8s %-8s %-10s %-10s %s",
			width, name(s.Scenario), s.Scenario.Workers, s.Scenario.Concurrency, fmtTable(s.Wall),
			statOr(s.Requests, s.Requests.P50), statOr(s.Requests, s.Requests.Max),
			statOr(s.Health, s.Health.P50), statOr(s.Health, s.Health.Max), fmtStalled(s.Stalled, s.Stalls))
		if s.Failed > 0 {
			tw.style(ansiRed, fmt.Sprintf("  %d failed", s.Failed))
		}
		tw.printf("\n")
	}
}

func statOr(s Stats, d time.Duration) string {
	if s.N == 0 {
		return "–"
	}
	return fmtTable(d)
}

func fmtStalled(d time.Duration, n int) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%s (%d×)", fmtTable(d), n)
}

// axis is the time scale every scenario shares, so that their timelines
// compare at a glance.
type axis struct {
	width int
	end   time.Duration // right edge
	step  time.Duration // between ticks
}

func newAxis(rep *Report, width int) axis {
	var end time.Duration
	for _, r := range rep.Results {
		end = max(end, r.end())
	}
	end = max(end, time.Millisecond)
	step := niceStep(end, 10)
	ticks := int(math.Ceil(float64(end) / float64(step)))
	return axis{width: width, end: time.Duration(ticks) * step, step: step}
}

// niceStep picks a 1-2-5 step that cuts end into at most n parts.
func niceStep(end time.Duration, n int) time.Duration {
	for _, s := range []time.Duration{
		time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
		10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
		20 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
	} {
		if end <= time.Duration(n)*s {
			return s
		}
	}
	return end / time.Duration(n)
}

// cell is the column holding t.
func (a axis) cell(t time.Duration) int {
	c := int(float64(t) / float64(a.end) * float64(a.width))
	return min(max(c, 0), a.width-1)
}

// mid is the time in the middle of column c.
func (a axis) mid(c int) time.Duration {
	return time.Duration((float64(c) + 0.5) / float64(a.width) * float64(a.end))
}

// tickLabel renders a tick in seconds: "0s", "0.5s", "2s".
func tickLabel(t time.Duration) string {
	return fmt.Sprintf("%gs", math.Round(t.Seconds()*1000)/1000)
}

const labelWidth = 14

func renderTimeline(tw *textWriter, r Result, st Settings, late time.Duration, ax axis) {
	for i, q := range r.Requests {
		if i == maxTextRows {
			tw.printf("%s… and %d more requests\n", strings.Repeat(" ", labelWidth), len(r.Requests)-maxTextRows)
			break
		}
		label := fmt.Sprintf("  req %d", q.Index)
		if q.Worker > 0 {
			label += fmt.Sprintf(" w%d", q.Worker)
		}
		tw.printf("%s", pad(label, labelWidth))
		tw.cells(requestCells(q, ax, st.Target != ""))
		tail := fmtTable(q.Latency())
		if !q.OK() {
			tail = "failed: " + requestFailure(q)
		}
		tw.printf("  %s\n", tail)
	}
	tw.printf("%s", pad("  health", labelWidth))
	tw.cells(probeCells(r.Probes, late, ax))
	tw.printf("  %d/%d late\n", r.LateProbes(late), len(r.Probes))

	// The axis: a ruler with a mark per tick, labels under the marks.
	ruler := []rune(strings.Repeat("─", ax.width))
	labels := []rune(strings.Repeat(" ", ax.width+6))
	free := 0 // first column a label may use without touching the previous one
	for t := time.Duration(0); t <= ax.end; t += ax.step {
		c := ax.cell(t)
		if t == ax.end {
			c = ax.width - 1
		}
		ruler[c] = '┼'
		l := []rune(tickLabel(t))
		start := c
		if t == ax.end {
			start = max(c-len(l)+1, 0)
		}
		if start < free {
			continue
		}
		copy(labels[start:], l)
		free = start + len(l) + 1
	}
	tw.style(ansiDim, pad("", labelWidth)+string(ruler))
	tw.printf("\n")
	tw.style(ansiDim, strings.TrimRight(pad("", labelWidth)+string(labels), " "))
	tw.printf("\n")
}

func requestFailure(q Request) string {
	if q.Err != "" {
		return q.Err
	}
	return fmt.Sprintf("status %d", q.Status)
}

// requestCells draws one request: queued from sent until the server logged
// "started processing", processing from there until the response arrived.
// blind means that the server's log is not ours to read (a --target): the
// request is drawn in flight from sent to answered.
func requestCells(q Request, ax axis, blind bool) []rune {
	row := []rune(strings.Repeat(" ", ax.width))
	start := q.Sent
	if q.HasStart {
		start = min(max(q.Started, q.Sent), q.Finished)
	}
	drawn := false
	processing := glyphProcessing
	if blind {
		processing = glyphInFlight
	}
	for c := range row {
		t := ax.mid(c)
		switch {
		case t >= start && t <= q.Finished:
			row[c], drawn = processing, true
		case t >= q.Sent && t < start:
			row[c] = glyphQueued
		}
	}
	if !drawn {
		// Shorter than a column: still show that it ran.
		row[ax.cell(start)] = processing
	}
	return row
}

// probeCells marks each column where a probe was sent: late (or failed) if
// any probe sent then was.
func probeCells(ps []Probe, late time.Duration, ax axis) []rune {
	row := []rune(strings.Repeat(" ", ax.width))
	for _, p := range ps {
		c := ax.cell(p.Sent)
		if !p.OK() || p.Latency > late {
			row[c] = glyphProbeLate
		} else if row[c] != glyphProbeLate {
			row[c] = glyphProbeOK
		}
	}
	return row
}

func pad(s string, width int) string {
	if n := utf8.RuneCountInString(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s + " "
}

// textWriter remembers the first write error, so rendering code stays
// linear, and adds colour only when enabled.
type textWriter struct {
	w     io.Writer
	color bool
	err   error
}

func (tw *textWriter) printf(format string, args ...any) {
	if tw.err == nil {
		_, tw.err = fmt.Fprintf(tw.w, format, args...)
	}
}

func (tw *textWriter) style(ansi, s string) {
	if tw.color {
		tw.printf("%s%s%s", ansi, s, ansiReset)
		return
	}
	tw.printf("%s", s)
}

var glyphColor = map[rune]string{
	glyphProcessing: ansiGreen,
	glyphQueued:     ansiAmber,
	glyphProbeOK:    ansiGreen,
	glyphProbeLate:  ansiRed,
	glyphInFlight:   ansiAmber,
}

// cells writes a row, switching colour only where the glyph changes.
func (tw *textWriter) cells(row []rune) {
	if !tw.color {
		tw.printf("%s", string(row))
		return
	}
	var b strings.Builder
	cur := ""
	for _, r := range row {
		if c := glyphColor[r]; c != cur {
			if cur != "" {
				b.WriteString(ansiReset)
			}
			b.WriteString(c)
			cur = c
		}
		b.WriteRune(r)
	}
	if cur != "" {
		b.WriteString(ansiReset)
	}
	tw.printf("%s", b.String())
}

// ProgressLine shows which scenario is running, on stderr so that the
// results on stdout can be redirected clean. On a terminal it is one line
// rewritten in place (with a carriage return, no escape sequences) with the
// elapsed time ticking; elsewhere it prints a plain line as each scenario
// starts and ends.
type ProgressLine struct {
	w   io.Writer
	tty bool

	mu      sync.Mutex
	cur     *Progress
	began   time.Time
	printed int // runes of the line on screen, to blank it when rewriting

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewProgressLine starts a progress display on w; Close ends it.
func NewProgressLine(w io.Writer, tty bool) *ProgressLine {
	p := &ProgressLine{w: w, tty: tty, stop: make(chan struct{}), done: make(chan struct{})}
	if !tty {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.redraw()
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// Update reports a scenario starting or ending; use it as Config.OnProgress.
func (p *ProgressLine) Update(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	head := fmt.Sprintf("scenario %d/%d %s", pr.Index, pr.Total, pr.Scenario.Name())
	if !p.tty {
		what := pr.What
		if what == "" {
			what = fmt.Sprintf("%d requests, %s", pr.Scenario.Concurrency, plural(pr.Scenario.Workers, "worker"))
		}
		if pr.Done {
			fmt.Fprintf(p.w, "%s: done in %s\n", head, fmtWords(pr.Took))
		} else {
			fmt.Fprintf(p.w, "%s: running (%s)…\n", head, what)
		}
		return
	}
	if !pr.Done {
		p.cur, p.began = &pr, time.Now()
	}
	p.redraw()
}

// redraw rewrites the terminal line; p.mu is held.
func (p *ProgressLine) redraw() {
	if p.cur == nil {
		return
	}
	line := fmt.Sprintf("scenario %d/%d %s: %s", p.cur.Index, p.cur.Total, p.cur.Scenario.Name(), fmtWords(time.Since(p.began)))
	n := utf8.RuneCountInString(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", max(p.printed-n, 0)))
	p.printed = n
}

// Close stops the ticking and, on a terminal, blanks the line so that the
// report starts on a clean one.
func (p *ProgressLine) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printed > 0 && p.tty {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.printed))
	}
	p.printed = 0
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
