package bench

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
)

// peerRow is the row name of each peer with a row, in the order they ran:
// net/http first.
func (r *runner) peerRows() []string {
	var names []string
	for _, m := range r.rows {
		if m.kind != "demo" && !slices.Contains(names, m.server) {
			names = append(names, m.server)
		}
	}
	return names
}

func (r *runner) kindOf(server string) string {
	for _, m := range r.rows {
		if m.server == server {
			return m.kind
		}
	}
	return ""
}

// renderPeerHeader lists, under the load line, what each peer ran as (its
// versions) and, plainly, each peer that could not run and why.
func (r *runner) renderPeerHeader(w io.Writer) {
	if len(r.rows) == 0 && len(r.missing) == 0 {
		return
	}
	t := newTable("", "")
	t.align = []bool{false, false}
	names := r.peerRows()
	for _, peer := range []string{nginxName, fasthttpName} {
		if r.costs != nil && r.costs.has(peer) && !slices.Contains(names, peer) {
			names = append(names, peer) // in the costs rounds only
		}
	}
	for _, name := range names {
		v := r.versions[name]
		if r.kindOf(name) == "baseline" {
			v = "net/http of " + runtime.Version() + " (built into demo: the hidden `demo baseline`)"
		}
		t.add("  "+name, dashIfEmpty(v))
	}
	for _, m := range r.missing {
		t.add("  "+m.peer, "could not run: "+m.why)
	}
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintln(w, "peers:")
	t.write(w)
}

// peerRatio is demo async ×1's requests per server CPU-second over a
// peer's.
type peerRatio struct {
	x      float64
	paired *medianCI // from the costs rounds, when the peer took part in them
}

func (p peerRatio) String() string { return fmt.Sprintf("%.2f×", p.x) }

// demoPeerRatio is demo async ×1's requests per server CPU-second over
// peer's in scenario. For keep-alive, when both took part in every costs
// round (enough of them for an interval), it is the median of those
// rounds' own ratios: the same load, the two visited seconds apart, many
// times over, where the throughput scenario has a few long loads of each
// minutes apart, whose ratios a shared machine moves by 10 % or more.
// Otherwise it is the median of each throughput round's own ratio.
func (r *runner) demoPeerRatio(scenario, peer string) (peerRatio, bool) {
	if scenario == keepAlive && r.costs != nil {
		if m, ok := r.costs.ratio(demoOne, peer); ok && m.conf > 0 {
			return peerRatio{x: m.median, paired: &m}, true
		}
	}
	x, ok := r.roundsRatio(scenario, peer)
	return peerRatio{x: x}, ok
}

// roundsRatio is demoPeerRatio from the throughput scenario's rows alone.
func (r *runner) roundsRatio(scenario, peer string) (float64, bool) {
	demo, p := r.row(scenario, demoOne), r.row(scenario, peer)
	if demo == nil || p == nil || p.fig.perCPU == 0 {
		return 0, false
	}
	return ratio(demo, p, perCPU), true
}

// renderPeers prints demo ÷ each peer in requests per server CPU-second and
// checks the targets set against nginx and fasthttp. A target whose peer did
// not run is listed as not measured.
func (r *runner) renderPeers(w io.Writer, check func(bool, string, string), unmeasured func(string, string)) {
	peers := r.peerRows()
	if r.row(keepAlive, demoOne) == nil && r.row(r.pipelinedLabel(), demoOne) == nil || len(peers) == 0 {
		return
	}
	fmt.Fprintf(w, "%s ÷ each peer, requests per server CPU-second (with --repeat, the median of each round's own ratio)\n", demoOne)
	var paired []string // peers whose keep-alive ratio comes from the costs rounds
	head := append([]string{"  scenario"}, peers...)
	t := newTable(head...)
	t.align = make([]bool, len(head))
	for i := 1; i < len(head); i++ {
		t.align[i] = true
	}
	for _, sc := range []string{keepAlive, r.pipelinedLabel()} {
		if r.row(sc, demoOne) == nil {
			continue
		}
		cells := []string{"  " + sc}
		for _, p := range peers {
			cell := "-"
			if x, ok := r.demoPeerRatio(sc, p); ok {
				cell = x.String()
				if x.paired != nil {
					cell += "*"
					paired = append(paired, p)
				}
			}
			cells = append(cells, cell)
		}
		t.add(cells...)
	}
	t.write(w)
	r.pairedFootnote(w, paired)
	fmt.Fprintln(w)

	target := func(scenario, peer, label string, min float64) {
		what := fmt.Sprintf("%s: demo ×1 ≥ %.1f× %s requests per CPU-second", strings.TrimSuffix(scenario, " ×"+fmt.Sprint(r.cfg.Pipeline)), min, label)
		if x, ok := r.demoPeerRatio(scenario, peer); ok {
			got := x.String()
			if m := x.paired; m != nil {
				got += fmt.Sprintf(" (%d paired rounds, 95%% interval %.2f× … %.2f×)", m.n, m.lo, m.hi)
			}
			check(x.x >= min, what, got)
			return
		}
		unmeasured(what, "not measured: "+label+" did not run")
	}
	if r.cfg.has(Throughput) {
		target(keepAlive, nginxName, "nginx (one worker process)", 1.0)
		target(keepAlive, fasthttpName, "fasthttp (GOMAXPROCS=1)", 1.2)
	}
	if r.cfg.has(Pipelined) {
		target(r.pipelinedLabel(), fasthttpName, "fasthttp (GOMAXPROCS=1)", 0.8)
	}
}

// pairedFootnote says, under the ratios, which keep-alive ratios come from
// the costs rounds, how closely they are known, and what the throughput
// rounds alone said.
func (r *runner) pairedFootnote(w io.Writer, peers []string) {
	if len(peers) == 0 {
		return
	}
	c := r.costs
	fmt.Fprintf(w, "  * keep-alive: from the costs rounds, the median of %d rounds' own ratios (%s and the peer loaded in turn)\n",
		c.rounds, demoOne)
	for _, p := range peers {
		m, _ := c.ratio(demoOne, p)
		line := fmt.Sprintf("    %s: 95%% interval of the median %.2f× … %.2f×, middle half of the rounds %.2f× … %.2f×", p, m.lo, m.hi, m.q1, m.q3)
		if x, ok := r.roundsRatio(keepAlive, p); ok {
			line += fmt.Sprintf("; the keep-alive rounds above alone: %.2f×", x)
		}
		fmt.Fprintln(w, line)
	}
}

// peerFootnote says, under the table, how the peers were set up and how
// much their answers differ from demo's on the wire.
func (r *runner) peerFootnote(w io.Writer) {
	var setup []string
	if slices.Contains(r.peerRows(), nginxName) {
		setup = append(setup, "nginx ×1: worker_processes 1 under its master (the CPU of both, as for demo's master and worker),")
		setup = append(setup, "access_log off, keepalive_requests raised from 1,000 (demo never closes a busy keep-alive connection)")
	}
	if slices.Contains(r.peerRows(), fasthttpName) {
		setup = append(setup, "fasthttp: GOMAXPROCS=1, built from "+FasthttpDir+" (a module of its own)")
	}
	for _, l := range setup {
		fmt.Fprintln(w, l)
	}
	var sizes []string
	for _, name := range append([]string{demoOne}, r.peerRows()...) {
		if n, ok := r.wireBytes[name]; ok {
			sizes = append(sizes, fmt.Sprintf("%s %d", name, n))
		}
	}
	if len(sizes) > 1 {
		fmt.Fprintf(w, "bytes per /healthcheck response (status line, headers, body): %s\n", strings.Join(sizes, ", "))
	}
}
