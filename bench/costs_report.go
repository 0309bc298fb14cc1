package bench

import (
	"fmt"
	"io"
	"slices"
)

// renderCosts prints what the costs rounds measured: each server's CPU time
// per request, and what each comparison costs, with the interval its
// median is known within and how widely single rounds spread.
func (r *runner) renderCosts(w io.Writer, check func(bool, string, string)) {
	c := r.costs
	fmt.Fprintln(w, "Costs: server CPU time per keep-alive GET /healthcheck (master + worker, read from each process's CPU clock),")
	fmt.Fprintf(w, "%s of %v per server, the servers loaded in turn (the order reversed every other round)\n", plural(c.rounds, "round"), c.round)
	t := newTable("  server", "CPU/request", "req/CPU-s", "req/s")
	t.align = []bool{false, true, true, true}
	for _, name := range c.names {
		perReq := quantile(sorted(c.perReq[name]), 0.5)
		t.add("  "+name, fmt.Sprintf("%.2fµs", perReq/1e3), fmtInt(int64(1e9/perReq)), fmtInt(int64(quantile(sorted(c.rate[name]), 0.5))))
	}
	t.write(w)
	fmt.Fprintln(w, "  (each the median of the rounds)")

	t = newTable("  what it costs (fewer requests per CPU-second)", "median", "95% interval of the median", "middle half of the rounds")
	t.align = []bool{false, true, true, true}
	for _, p := range costPairs {
		if m, ok := c.cost(p); ok {
			t.add("  "+p.label, pct(m.median), m.interval(), fmt.Sprintf("%s … %s", pct(m.q1), pct(m.q3)))
		}
	}
	t.write(w)
	fmt.Fprintln(w, "  all on: access log and blocked-loop detector (demo serve's defaults); all off: --no-access-log")
	fmt.Fprintln(w, "  --slow-callback 0; demo async ×1: --no-access-log, detector on. A round's cost is 1 − (off's CPU per request")
	fmt.Fprintln(w, "  ÷ on's), two loads seconds apart; the figure is the median over the rounds, since a burst of other work on a")
	fmt.Fprintln(w, "  shared machine moves a round or two, not the median, and the interval holds the true median with 95%")
	fmt.Fprintln(w, "  probability whatever the noise's shape (from the order statistics alone).")
	if c.has(nginxLogOnName) {
		fmt.Fprintln(w, "  nginx's access log: to standard error in 64k buffers flushed every 50 ms, like demo's worker.")
	}
	fmt.Fprintln(w, "  request ids are made only by the app's / paths (/, /mixed, /all-async, /threadpool), never by")
	fmt.Fprintln(w, "  /healthcheck: none is in this figure")
	one := r.row(keepAlive, demoOne)
	if ref := r.row(keepAlive, demoNetHTTP); ref != nil && one != nil && ref.fig.perCPU > 0 {
		fmt.Fprintf(w, "  the server's own request parser: %.2f× the requests per CPU-second of net/http's ReadRequest (%s vs %s in the table)",
			ratio(one, ref, perCPU), demoOne, demoNetHTTP)
		if refP, oneP := r.row(r.pipelinedLabel(), demoNetHTTP), r.row(r.pipelinedLabel(), demoOne); refP != nil && oneP != nil && refP.fig.perCPU > 0 {
			fmt.Fprintf(w, ", %.2f× %s", ratio(oneP, refP, perCPU), r.pipelinedLabel())
		}
		fmt.Fprintln(w)
	}
	if c.rounds < 6 {
		fmt.Fprintf(w, "  %s: too few for an interval; --cost-rounds 20 or more to judge\n", plural(c.rounds, "round"))
	}
	fmt.Fprintln(w)
	if m, ok := c.cost(costPairs[0]); ok {
		check(m.median <= 0.05, "costs: access log + detector ≤ 5% of req/CPU-s (all on vs all off, median of the rounds)",
			fmt.Sprintf("%s (95%% interval %s)", pct(m.median), m.interval()))
	}
}

// interval prints the confidence interval of the median, or says there is
// none.
func (m medianCI) interval() string {
	if m.conf == 0 {
		return "-"
	}
	return fmt.Sprintf("%s … %s", pct(m.lo), pct(m.hi))
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func sorted(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}
