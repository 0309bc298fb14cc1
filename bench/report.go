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

// render writes the report: the table, the capacity, scaling and start-up
// sections, and the targets, each met (✓) or missed (✗).
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

	fmt.Fprintf(w, "demo bench — %s\n", machine())
	runs := ""
	if r.cfg.Repeat > 1 {
		runs = fmt.Sprintf("; each row the median of %d interleaved runs", r.cfg.Repeat)
	}
	fmt.Fprintf(w, "load: %s, %d connections, %v per server and scenario (after %v warm-up), GET /healthcheck%s\n\n",
		r.loadDoc, r.cfg.Connections, r.cfg.Duration, r.cfg.Warmup, runs)
	if len(r.rows) > 0 {
		r.renderTable(w)
		r.checkThroughput(check)
		r.renderScaling(w, check)
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
		fmt.Fprintf(w, "Targets (issue 5): %d of %d met\n", len(r.targets)-len(rep.Missed), len(r.targets))
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
		if b := r.baselineOf(m.scenario); b != nil {
			bf = b.fig
		}
		ratio := func(v, base float64) string {
			if base == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", v/base)
		}
		lat := func(d time.Duration) string {
			if !f.hasLat {
				return "-" // wrk recorded none
			}
			return fmtDur(d)
		}
		latRatio := func(v, base time.Duration) string {
			if !f.hasLat || !bf.hasLat {
				return "-"
			}
			return ratio(v.Seconds(), base.Seconds())
		}
		t.add(m.scenario, m.server,
			fmtInt(int64(f.rate)), ratio(f.rate, bf.rate),
			fmt.Sprintf("%.0f%%", f.cpuPct), ratio(f.cpuPct, bf.cpuPct),
			fmtInt(int64(f.perCPU)), ratio(f.perCPU, bf.perCPU),
			lat(f.p50), latRatio(f.p50, bf.p50),
			lat(f.p99), latRatio(f.p99, bf.p99),
			fmtInt(m.load.non2xx), fmtInt(m.load.errors))
	}
	t.write(w)
	fmt.Fprintln(w, "× is the ratio to net/http GOMAXPROCS=1 in the same scenario of this run. req/CPU-s is requests per")
	fmt.Fprintln(w, "second of the server's own CPU time (demo: master + workers, from /proc): the figure to compare, since")
	fmt.Fprintln(w, "the load generator shares the machine. CPU 100% = one core.")
	for i := range r.rows {
		if m := &r.rows[i]; m.load.firstErr != "" {
			fmt.Fprintf(w, "  %s, %s: first error: %s\n", m.scenario, m.server, m.load.firstErr)
		}
	}
	fmt.Fprintln(w)
}

func (r *runner) checkThroughput(check func(bool, string, string)) {
	demo, base := r.row(keepAlive, "demo async ×1"), r.baselineOf(keepAlive)
	if demo != nil && base != nil && r.cfg.has(Throughput) {
		ratio := demo.fig.perCPU / base.fig.perCPU
		check(ratio >= 1.5, "keep-alive: demo ×1 ≥ 1.5× net/http requests per CPU-second", fmt.Sprintf("%.2f×", ratio))
		p99, bp99 := demo.fig.p99, base.fig.p99
		check(p99 <= bp99 && demo.fig.hasLat, "keep-alive: demo p99 no worse than net/http's", fmt.Sprintf("%s vs %s", fmtDur(p99), fmtDur(bp99)))
	}
	pipe := r.row(r.pipelinedLabel(), "demo async ×1")
	if pipe != nil && demo != nil {
		ratio := pipe.fig.perCPU / demo.fig.perCPU
		check(ratio > 1, "pipelined: demo faster than keep-alive per CPU-second", fmt.Sprintf("%.2f×", ratio))
	}
	var bad int64
	for _, m := range r.rows {
		if m.kind == "demo" {
			bad += m.load.non2xx + m.load.errors
		}
	}
	check(bad == 0, "demo: zero non-2xx and zero errors under load", fmtInt(bad))
	if logged := r.row(keepAlive, "demo async ×1 +access-log"); logged != nil && demo != nil {
		cost := 1 - logged.fig.perCPU/demo.fig.perCPU
		check(cost <= 0.05, "access log costs ≤ 5% of requests per CPU-second", fmt.Sprintf("%.1f%%", 100*cost))
	}
}

func (r *runner) renderScaling(w io.Writer, check func(bool, string, string)) {
	one, two := r.row(keepAlive, "demo async ×1"), r.row(keepAlive, "demo async ×2")
	if one == nil || two == nil {
		return
	}
	ratio := two.fig.perCPU / one.fig.perCPU
	fmt.Fprintf(w, "Scaling (keep-alive): demo ×2 does %.2f× the requests per CPU-second of ×1.\n", ratio)
	// Each run's split on its own: the load opens every connection at
	// once, so a run is one roll of the accept dice, and pooling runs
	// (64/0 then 0/64) would look even when no run was.
	var splits, largest []string
	meanLargest := 0.0
	for _, conns := range two.allConns {
		var split []string
		total, top := 0, 0
		for _, pid := range two.pids {
			split = append(split, strconv.Itoa(conns[pid]))
			total += conns[pid]
			top = max(top, conns[pid])
		}
		share := 0.0
		if total > 0 {
			share = float64(top) / float64(total)
		}
		meanLargest += share / float64(len(two.allConns))
		splits = append(splits, strings.Join(split, "/"))
		largest = append(largest, fmt.Sprintf("%.0f%%", 100*share))
	}
	fmt.Fprintf(w, "  connections per worker, established sockets from /proc half-way through each run: %s\n", strings.Join(splits, ", "))
	fmt.Fprintf(w, "    largest share per run %s; mean %.0f%%\n", strings.Join(largest, ", "), 100*meanLargest)
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
	fmt.Fprintf(w, "  CPU time per worker in the median run: %s\n", strings.Join(cpuShares, " / "))
	if two.connErr != nil {
		fmt.Fprintf(w, "  connection count: %v\n", two.connErr)
	}
	fmt.Fprintln(w)
	check(ratio >= 0.9, "scaling: ×2 within 10% of ×1 requests per CPU-second", fmt.Sprintf("%.2f×", ratio))
	check(len(splits) > 0 && meanLargest <= 0.6, "scaling: connections spread evenly (largest share ≤ 60%, mean of runs)",
		fmt.Sprintf("%.0f%%", 100*meanLargest))
}

func renderCapacity(w io.Writer, c *capacityResult, check func(bool, string, string)) {
	fmt.Fprintf(w, "Capacity: ONE async worker, %s concurrent GET /all-async, each on its own connection, %d sequential\n",
		fmtInt(int64(c.n)), c.calls)
	fmt.Fprintf(w, "calls to demo external (delay %v) per request; connections opened first (%s in %s), then all sent at once\n",
		c.delay, fmtInt(int64(c.connected)), fmtDur(c.dialTime))
	fmt.Fprintf(w, "  completed      %s of %s with 2xx in %s (budget %s)   non-2xx %d   errors %d\n",
		fmtInt(int64(c.completed)), fmtInt(int64(c.n)), fmtDur(c.wall), fmtDur(c.budget()), c.non2xx, c.errors)
	if c.firstErr != "" {
		fmt.Fprintf(w, "  first error    %s\n", c.firstErr)
	}
	fmt.Fprintf(w, "  latency        p50 %s   p99 %s   max %s (from the burst)\n",
		fmtDur(c.lat.quantile(0.5)), fmtDur(c.lat.quantile(0.99)), fmtDur(c.lat.max))
	fmt.Fprintf(w, "  /healthcheck   %d probes on fresh connections: p50 %s   p99 %s   max %s   failed %d\n",
		c.healthN, fmtDur(c.health.quantile(0.5)), fmtDur(c.health.quantile(0.99)), fmtDur(c.health.max), c.healthErrs)
	perReq := float64(c.peakRSS) / float64(max(1, c.n))
	above := float64(c.peakRSS-c.idleRSS) / float64(max(1, c.n))
	fmt.Fprintf(w, "  worker memory  peak RSS (VmHWM) %.1f MiB = %.1f KiB per in-flight request (%.1f KiB above the idle %.1f MiB)\n",
		float64(c.peakRSS)/1024, perReq, above, float64(c.idleRSS)/1024)
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / max(c.wall.Seconds(), 1e-9) }
	fmt.Fprintf(w, "  CPU            worker %s (%.0f%%), demo external %s (%.0f%%), bench %s (%.0f%%) over the burst\n",
		fmtDur(c.workerCPU), pct(c.workerCPU), fmtDur(c.externalCPU), pct(c.externalCPU), fmtDur(c.benchCPU), pct(c.benchCPU))
	fmt.Fprintf(w, "  external alone the same burst straight at demo external (1 call each): all answered in %s, %d failed\n",
		fmtDur(c.extAlone), c.extAloneBad)
	over, extOver := c.wall-time.Duration(c.calls)*c.delay, time.Duration(c.calls)*max(0, c.extAlone-c.delay)
	fmt.Fprintf(w, "  overshoot      %s beyond %d × delay, of which up to %s (%d × %s) is the external API's own\n",
		fmtDur(over), c.calls, fmtDur(extOver), c.calls, fmtDur(max(0, c.extAlone-c.delay)))
	fmt.Fprintf(w, "  kernel         listen-queue overflows %d, drops %d during the burst; somaxconn %d caps every backlog\n",
		c.overflows, c.drops, c.somaxconn)
	fmt.Fprintf(w, "  open files     worker limit %s for %s requests\n", fmtInt(int64(c.noFile)), fmtInt(int64(c.n)))
	if c.noFileNote != "" {
		fmt.Fprintf(w, "  note           %s\n", c.noFileNote)
	}
	fmt.Fprintln(w)

	check(c.completed == c.n && c.errors == 0 && c.non2xx == 0,
		fmt.Sprintf("capacity: all %s requests answered 2xx, zero errors", fmtInt(int64(c.n))),
		fmt.Sprintf("%s ok, %d errors", fmtInt(int64(c.completed)), c.errors))
	check(c.wall <= c.budget(), fmt.Sprintf("capacity: all complete within %d × delay + 1 s", c.calls),
		fmt.Sprintf("%s (budget %s)", fmtDur(c.wall), fmtDur(c.budget())))
	// The 150 MiB is for 10,000 requests; per request it is 15 KiB
	// of growth, whatever the count.
	check(c.peakRSS <= 150<<10 && above <= 15, "capacity: worker peak RSS ≤ 150 MiB, ≤ 15 KiB per in-flight request",
		fmt.Sprintf("%.1f MiB, %.1f KiB above idle", float64(c.peakRSS)/1024, above))
	check(c.healthErrs == 0 && c.healthN > 0 && c.health.max < 100*time.Millisecond,
		"capacity: /healthcheck answers in < 100 ms throughout", fmt.Sprintf("max %s, %d failed", fmtDur(c.health.max), c.healthErrs))
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
