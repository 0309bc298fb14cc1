package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// render writes the report: the peers, the table, the capacity, scaling
// and start-up sections, and the targets, each met (✓), missed (✗) or not
// measured (–, its peer did not run).
func (r *runner) render(w io.Writer) Report {
	var rep Report
	check := func(ok bool, what, measured string) {
		mark := "✓"
		if !ok {
			mark = "✗"
			rep.Missed = append(rep.Missed, what)
		}
		r.targets = append(r.targets, [3]string{mark, what, measured})
	}
	unmeasured := func(what, why string) {
		rep.Unmeasured = append(rep.Unmeasured, what)
		r.targets = append(r.targets, [3]string{"–", what, why})
	}

	fmt.Fprintf(w, "demo bench — %s\n", machine())
	runs := ""
	if r.cfg.Repeat > 1 {
		runs = fmt.Sprintf("; each row the median of %d interleaved runs", r.cfg.Repeat)
	}
	fmt.Fprintf(w, "load: %s, %d connections, %v per server and scenario (after %v warm-up), GET /healthcheck%s\n",
		r.loadDoc, r.cfg.Connections, r.cfg.Duration, r.cfg.Warmup, runs)
	r.renderPeerHeader(w)
	fmt.Fprintln(w)
	if len(r.rows) > 0 {
		r.renderTable(w)
		r.checkThroughput(check)
		r.renderPeers(w, check, unmeasured)
		r.renderScaling(w, check)
	}
	if r.costs != nil {
		r.renderCosts(w, check)
	}
	if c := r.capacity; c != nil {
		renderCapacity(w, c, check)
	}
	if s := r.startup; s != nil {
		renderStartup(w, s, check)
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
	}
	if len(r.targets) > 0 {
		judged := len(r.targets) - len(rep.Unmeasured)
		fmt.Fprintf(w, "Targets: %d of %d met", judged-len(rep.Missed), judged)
		if n := len(rep.Unmeasured); n > 0 {
			fmt.Fprintf(w, "; %d not measured (a peer did not run)", n)
		}
		fmt.Fprintln(w)
		t := newTable("", "", "")
		t.align = []bool{false, false, false}
		for _, c := range r.targets {
			t.add("  "+c[0], c[1], c[2])
		}
		t.write(w)
	}
	return rep
}

// machine describes where the run happened.
func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(raw)) {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimLeft(v, " \t:"))
				break
			}
		}
	}
	kernel := ""
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = " " + unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%d CPUs (%s), Linux%s, %s", runtime.NumCPU(), model, kernel, runtime.Version())
}

func (r *runner) baselineOf(scenario string) *measurement {
	for i := range r.rows {
		if r.rows[i].scenario == scenario && r.rows[i].kind == "baseline" {
			return &r.rows[i]
		}
	}
	return nil
}

func (r *runner) row(scenario, server string) *measurement {
	for i := range r.rows {
		if r.rows[i].scenario == scenario && r.rows[i].server == server {
			return &r.rows[i]
		}
	}
	return nil
}

func (r *runner) renderTable(w io.Writer) {
	t := newTable("scenario", "server", "req/s", "×", "CPU", "×", "req/CPU-s", "×", "p50", "×", "p99", "×", "non-2xx", "errors")
	for i := range r.rows {
		m := &r.rows[i]
		f := m.fig
		var bf figures
		b := r.baselineOf(m.scenario)
		if b != nil {
			bf = b.fig
		}
		paired := func(get func(figures) float64) string {
			if b == nil || get(bf) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", ratio(m, b, get))
		}
		lat := func(d time.Duration) string {
			if !f.hasLat {
				return "-" // wrk recorded none
			}
			return fmtDur(d)
		}
		latRatio := func(get func(figures) time.Duration) string {
			if !f.hasLat || !bf.hasLat {
				return "-"
			}
			return paired(func(f figures) float64 { return get(f).Seconds() })
		}
		t.add(m.scenario, m.server,
			fmtInt(int64(f.rate)), paired(func(f figures) float64 { return f.rate }),
			fmt.Sprintf("%.0f%%", f.cpuPct), paired(func(f figures) float64 { return f.cpuPct }),
			fmtInt(int64(f.perCPU)), paired(perCPU),
			lat(f.p50), latRatio(func(f figures) time.Duration { return f.p50 }),
			lat(f.p99), latRatio(func(f figures) time.Duration { return f.p99 }),
			fmtInt(m.load.non2xx), fmtInt(m.load.errors))
	}
	t.write(w)
	fmt.Fprintln(w, "× is the ratio to net/http GOMAXPROCS=1 in the same scenario of this run (with --repeat, the median of")
	fmt.Fprintln(w, "each round's own ratio: rounds drift, runs within a round are seconds apart). req/CPU-s is requests per")
	fmt.Fprintln(w, "second of the server's own CPU time (demo: master + workers, from /proc): the figure to compare, since")
	fmt.Fprintln(w, "the load generator shares the machine. CPU 100% = one core.")
	if r.row(keepAlive, demoNetHTTP) != nil || len(r.setups) > 0 {
		fmt.Fprintln(w, "demo async ×1: --no-access-log, blocked-loop detector on (the keep-alive targets' configuration).")
		if r.row(keepAlive, demoNetHTTP) != nil {
			fmt.Fprintln(w, "net/http parser: the same, every request parsed by net/http's ReadRequest (--http-parser net/http).")
		}
		if len(r.setups) > 0 {
			fmt.Fprintln(w, "×2 rows: --no-access-log; shared: the master's socket; exclusive: the same with --epoll-exclusive;")
			fmt.Fprintln(w, "reuse-port: --reuse-port.")
		}
	}
	r.peerFootnote(w)
	for i := range r.rows {
		if m := &r.rows[i]; m.load.firstErr != "" {
			fmt.Fprintf(w, "  %s, %s: first error: %s\n", m.scenario, m.server, m.load.firstErr)
		}
	}
	fmt.Fprintln(w)
}

func (r *runner) checkThroughput(check func(bool, string, string)) {
	demo, base := r.row(keepAlive, demoOne), r.baselineOf(keepAlive)
	if demo != nil && base != nil && r.cfg.has(Throughput) {
		x := ratio(demo, base, perCPU)
		check(x >= 1.5, "keep-alive: demo ×1 ≥ 1.5× net/http requests per CPU-second", fmt.Sprintf("%.2f×", x))
		p99, bp99 := demo.fig.p99, base.fig.p99
		check(p99 <= bp99 && demo.fig.hasLat, "keep-alive: demo p99 no worse than net/http's", fmt.Sprintf("%s vs %s", fmtDur(p99), fmtDur(bp99)))
	}
	pipe := r.row(r.pipelinedLabel(), demoOne)
	if pipe != nil && demo != nil {
		x := ratio(pipe, demo, perCPU)
		check(x > 1, "pipelined: demo faster than keep-alive per CPU-second", fmt.Sprintf("%.2f×", x))
	}
	var bad int64
	for _, m := range r.rows {
		if m.kind == "demo" {
			bad += m.load.non2xx + m.load.errors
		}
	}
	for _, runs := range r.spreads {
		for _, sr := range runs {
			bad += int64(sr.arrivals.non2xx + sr.arrivals.errors)
		}
	}
	check(bad == 0, "demo: zero non-2xx and zero errors under load", fmtInt(bad))
}

// renderScaling compares each --workers 2 socket setup with one worker, in
// requests per CPU-second, and shows how each spread its connections: wrk's
// 64, opened in one burst, and a steady arrival of new ones.
func (r *runner) renderScaling(w io.Writer, check func(bool, string, string)) {
	one := r.row(keepAlive, demoOne)
	if one == nil || len(r.setups) == 0 {
		return
	}
	fmt.Fprintf(w, "Scaling: --workers 2 against %s (keep-alive, requests per CPU-second), and each worker's share of connections\n", demoOne)
	t := newTable("  setup", "×2 ÷ ×1", "wrk's 64 connections, per run", "largest", "new connections, per run", "largest", "CPU per worker")
	t.align = []bool{false, true, false, true, false, true, false}
	type verdict struct {
		label            string
		ratio            float64
		burst, arrivals  float64
		hasBurst, hasArr bool
	}
	var verdicts []verdict
	for _, ss := range r.setups {
		two := r.row(keepAlive, ss.server)
		if two == nil {
			continue
		}
		v := verdict{label: ss.short, ratio: ratio(two, one, perCPU)}
		// Each run's split on its own: a run is one roll of the accept
		// dice, and pooling runs (64/0 then 0/64) would look even when no
		// run was.
		var bursts []string
		for _, conns := range two.allConns {
			var split []string
			total, top := 0, 0
			for _, pid := range two.pids {
				split = append(split, strconv.Itoa(conns[pid]))
				total += conns[pid]
				top = max(top, conns[pid])
			}
			if total > 0 {
				v.burst += float64(top) / float64(total) / float64(len(two.allConns))
				v.hasBurst = true
			}
			bursts = append(bursts, strings.Join(split, "/"))
		}
		var arrivals []string
		runs := r.spreads[ss.server]
		for _, sr := range runs {
			arrivals = append(arrivals, sr.split())
			v.arrivals += sr.largest() / float64(len(runs))
			v.hasArr = v.hasArr || sr.counted > 0
		}
		var workerCPU time.Duration
		for _, pid := range two.pids {
			workerCPU += two.perPid[pid]
		}
		var cpuShares []string
		for _, pid := range two.pids {
			if workerCPU > 0 {
				cpuShares = append(cpuShares, fmt.Sprintf("%.0f%%", 100*float64(two.perPid[pid])/float64(workerCPU)))
			}
		}
		t.add("  "+ss.label, fmt.Sprintf("%.2f×", v.ratio), dashIfEmpty(strings.Join(bursts, ", ")), sharePct(v.hasBurst, v.burst),
			dashIfEmpty(strings.Join(arrivals, ", ")), sharePct(v.hasArr, v.arrivals), dashIfEmpty(strings.Join(cpuShares, " / ")))
		if two.connErr != nil {
			r.notes = append(r.notes, fmt.Sprintf("scaling, %s: connection count: %v", ss.label, two.connErr))
		}
		verdicts = append(verdicts, v)
	}
	t.write(w)
	fmt.Fprintln(w, "  wrk's 64 connections: established sockets per worker, from /proc half-way through each run; wrk opens")
	fmt.Fprintln(w, "  all of them at once at the start, which favours whichever worker wakes first.")
	if r.cfg.NewConns > 0 {
		fmt.Fprintf(w, "  new connections: %s GET /healthcheck, one per connection (Connection: close), arriving steadily over %v,\n",
			fmtInt(int64(r.cfg.NewConns)), r.cfg.NewConnsOver)
		fmt.Fprintln(w, "  counted per worker by its request counter (the master's control socket, as `demo status --json`), before/after.")
	}
	fmt.Fprintln(w, "  largest: the biggest worker's share (mean over runs). CPU per worker: each worker's share in the median run.")
	r.noiseNote(w)
	fmt.Fprintln(w)
	for _, v := range verdicts {
		check(v.ratio >= 0.9, fmt.Sprintf("scaling [%s]: ×2 within 10%% of ×1 requests per CPU-second", v.label), fmt.Sprintf("%.2f×", v.ratio))
		what := fmt.Sprintf("scaling [%s]: connections spread evenly (largest share ≤ 60%%, wrk", v.label)
		measured := "wrk " + sharePct(v.hasBurst, v.burst)
		ok := v.hasBurst && v.burst <= 0.6
		if r.cfg.NewConns > 0 {
			what += " and new"
			measured += ", new " + sharePct(v.hasArr, v.arrivals)
			ok = ok && v.hasArr && v.arrivals <= 0.6
		}
		check(ok, what+")", measured)
	}
}

// noiseNote warns that ratios close to 1 from one run each say little on
// a shared machine.
func (r *runner) noiseNote(w io.Writer) {
	if r.cfg.Repeat < 3 {
		fmt.Fprintf(w, "  %s each: on a shared machine a row moves by 10%% or more from noise alone; --repeat 3 or more to judge\n",
			plural(r.cfg.Repeat, "run"))
	}
}

// sharePct prints a share, or "-" when none was measured.
func sharePct(ok bool, f float64) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func renderCapacity(w io.Writer, c *capacityResult, check func(bool, string, string)) {
	fmt.Fprintf(w, "Capacity: ONE async worker, %s concurrent GET /all-async, each on its own connection, %d sequential\n",
		fmtInt(int64(c.n)), c.calls)
	fmt.Fprintf(w, "calls to demo external (delay %v) per request; connections opened first (%s in %s), then all sent at once\n",
		c.delay, fmtInt(int64(c.connected)), fmtDur(c.dialTime))
	fmt.Fprintf(w, "  completed      %s of %s with 2xx in %s (budget %s)   non-2xx %d   errors %d\n",
		fmtInt(int64(c.ok)), fmtInt(int64(c.n)), fmtDur(c.wall), fmtDur(c.budget()), c.non2xx, c.errors)
	if c.firstErr != "" {
		fmt.Fprintf(w, "  first error    %s\n", c.firstErr)
	}
	fmt.Fprintf(w, "  latency        p50 %s   p99 %s   max %s (from the burst; the bench wrote the last request %s after the first)\n",
		fmtDur(c.lat.quantile(0.5)), fmtDur(c.lat.quantile(0.99)), fmtDur(c.lat.max), fmtDur(c.sent))
	h := c.health
	fmt.Fprintf(w, "  /healthcheck   %d probes on fresh connections, from a probe process of its own (GOMAXPROCS=1, CPU %s):\n",
		h.Probes, fmtDur(h.CPU))
	fmt.Fprintf(w, "                 p50 %s   p99 %s   max %s   ≥ 100ms %d   failed %d\n",
		fmtDur(h.P50), fmtDur(h.P99), fmtDur(h.Max), h.Over100, h.Failed)
	if h.FirstErr != "" {
		fmt.Fprintf(w, "                 first failed probe: %s\n", h.FirstErr)
	}
	perReq := float64(c.peakRSS) / float64(max(1, c.n))
	above := float64(c.peakRSS-c.idleRSS) / float64(max(1, c.n))
	fmt.Fprintf(w, "  worker memory  peak RSS (VmHWM) %.1f MiB = %.1f KiB per in-flight request (%.1f KiB above the idle %.1f MiB)\n",
		float64(c.peakRSS)/1024, perReq, above, float64(c.idleRSS)/1024)
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / max(c.wall.Seconds(), 1e-9) }
	fmt.Fprintf(w, "  CPU            worker %s (%.0f%%), demo external %s (%.0f%%), bench %s (%.0f%%) over the burst\n",
		fmtDur(c.workerCPU), pct(c.workerCPU), fmtDur(c.externalCPU), pct(c.externalCPU), fmtDur(c.benchCPU), pct(c.benchCPU))
	fmt.Fprintf(w, "  external alone the same burst straight at demo external (1 call each, as the worker calls: Connection: close):\n")
	fmt.Fprintf(w, "                 all answered in %s, %d failed; written over %s, each answered at most %s after its write\n",
		fmtDur(c.extAlone), c.extAloneBad, fmtDur(c.extSent), fmtDur(c.extLongest))
	// The external API's own share is what it took beyond its delay from a
	// request's write to its answer: the bench's own time to write the
	// burst is not the API's, and the worker's burst has it too, once.
	extOwn := max(0, c.extLongest-c.delay)
	over, extOver := c.wall-time.Duration(c.calls)*c.delay, time.Duration(c.calls)*extOwn
	fmt.Fprintf(w, "  overshoot      %s beyond %d × delay, of which up to %s (%d × %s) is the external API's own\n",
		fmtDur(over), c.calls, fmtDur(extOver), c.calls, fmtDur(extOwn))
	fmt.Fprintf(w, "  kernel         listen-queue overflows %d, drops %d while connecting and during the burst; somaxconn %d caps every backlog\n",
		c.overflows, c.drops, c.somaxconn)
	fmt.Fprintf(w, "  open files     worker limit %s for %s requests\n", fmtInt(int64(c.noFile)), fmtInt(int64(c.n)))
	if c.noFileNote != "" {
		fmt.Fprintf(w, "  note           %s\n", c.noFileNote)
	}
	fmt.Fprintln(w)

	check(c.ok == c.n && c.errors == 0 && c.non2xx == 0,
		fmt.Sprintf("capacity: all %s requests answered 2xx, zero errors", fmtInt(int64(c.n))),
		fmt.Sprintf("%s ok, %d errors", fmtInt(int64(c.ok)), c.errors))
	check(c.wall <= c.budget(), fmt.Sprintf("capacity: all complete within %d × delay + 1 s", c.calls),
		fmt.Sprintf("%s (budget %s)", fmtDur(c.wall), fmtDur(c.budget())))
	// The target's 150 MiB is for 10,000 requests; per request it is 15 KiB
	// of growth, whatever the count.
	check(c.peakRSS <= 150<<10 && above <= 15, "capacity: worker peak RSS ≤ 150 MiB, ≤ 15 KiB per in-flight request",
		fmt.Sprintf("%.1f MiB, %.1f KiB above idle", float64(c.peakRSS)/1024, above))
	check(h.Failed == 0 && h.Probes > 0 && h.Max < 100*time.Millisecond,
		"capacity: /healthcheck answers in < 100 ms throughout (probe process)", fmt.Sprintf("max %s, %d failed", fmtDur(h.Max), h.Failed))
	// The external API alone may use at most half of the second of slack
	// the budget allows per request, over all its calls.
	check(c.extAloneBad == 0 && extOver <= time.Second/2, "capacity: demo external not the bottleneck (its own overshoot ≤ 0.5 s)",
		fmt.Sprintf("%s over %d calls", fmtDur(extOver), c.calls))
	if c.asked != c.n {
		check(false, fmt.Sprintf("capacity: run all %s requests asked for", fmtInt(int64(c.asked))), "open-files limit: "+fmtInt(int64(c.n)))
	}
}

func renderStartup(w io.Writer, s *startupResult, check func(bool, string, string)) {
	spread := func(ds []time.Duration) string {
		return fmt.Sprintf("median %s, max %s", fmtDur(median(ds)), fmtDur(slices.Max(ds)))
	}
	fmt.Fprintf(w, "Start-up (%s)\n", plural(len(s.ready), "round"))
	fmt.Fprintf(w, "  serve --workers 4: spawn → `running on` (all workers ready)          %s\n", spread(s.ready))
	fmt.Fprintf(w, "  SIGKILLed worker → replacement answers on a fresh connection          %s\n", spread(s.replaced))
	fmt.Fprintf(w, "    (→ `Started server process` %s; → worker's ready line %s)\n", spread(s.startedLine), spread(s.readyLine))
	fmt.Fprintln(w)
	check(median(s.ready) < 300*time.Millisecond, "start-up: serve --workers 4 ready in < 300 ms (median)", fmtDur(median(s.ready)))
	check(median(s.replaced) < 100*time.Millisecond, "start-up: killed worker replaced and accepting in < 100 ms (median)", fmtDur(median(s.replaced)))
}

// table is a plain-text table whose numeric columns align right.
type table struct {
	head  []string
	rows  [][]string
	align []bool // true: right-aligned
}

func newTable(head ...string) *table {
	t := &table{head: head, align: make([]bool, len(head))}
	for i := 2; i < len(head); i++ {
		t.align[i] = true
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.head))
	all := append([][]string{t.head}, t.rows...)
	for _, row := range all {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for n, row := range all {
		if n == 0 && strings.Join(row, "") == "" {
			continue
		}
		var b strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if t.align[i] {
				b.WriteString(pad + c)
			} else if i < len(row)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// fmtInt writes n with thousands separators: 45,123.
func fmtInt(n int64) string {
	s := strconv.FormatInt(max(n, -n), 10)
	var b strings.Builder
	if n < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
