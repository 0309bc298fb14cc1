package experiment

import (
	"fmt"
	"strings"
	"time"
)

// renderOpen writes an open-loop report: per scenario, a line on the load
// and the health checks and a compact table per route; then the answer to
// --slo, if asked.
func renderOpen(tw *textWriter, rep *Report) {
	o := *rep.Settings.Open
	tw.printf("%s\n", openSettingsLine(rep))
	for _, r := range rep.Results {
		s := SummarizeOpen(r, o)
		tw.printf("\n")
		tw.style(ansiBold, r.Scenario.Name())
		tw.printf(" — %s\n", openWords(s, o))
		if w := s.Warning(o); w != "" {
			tw.printf("  ")
			tw.style(ansiAmber, w)
			tw.printf("\n")
		}
		renderRouteTable(tw, s)
	}
	if answers := AnswerSLO(rep); len(answers) > 0 {
		tw.printf("\n")
		for _, a := range answers {
			color := ansiGreen
			if a.Workers == 0 {
				color = ansiAmber
			}
			tw.style(color, "SLO "+a.Line)
			tw.printf("\n")
		}
	}
}

func openSettingsLine(rep *Report) string {
	st := rep.Settings
	o := st.Open
	var b strings.Builder
	switch {
	case st.Target != "":
		fmt.Fprintf(&b, "Target %s · ", st.Target)
	case st.App != nil:
		fmt.Fprintf(&b, "%s · ", st.App.words(st))
	default:
		fmt.Fprintf(&b, "External API: %s per call, %d calls per request · ", st.Delay, st.Calls)
	}
	fmt.Fprintf(&b, "open loop: %s requests/s for %v (Poisson arrivals, seed %d) to %s · %s every %s, late after %s, failed after %s · liveness probe every %s (timeout %s, restart after %d failures)",
		fmtRate(o.Rate), o.Duration, o.Seed, o.Mix, st.healthPath(), st.ProbeInterval, fmtWords(OpenLateAfter), fmtWords(min(OpenProbeTimeout, st.requestTimeout(Scenario{}))),
		fmtWords(LivenessPeriod), fmtWords(LivenessTimeout), LivenessFailureThreshold)
	return b.String()
}

// openWords: "1000 sent at 50.0/s (lag p99 1 ms, at most 312 in flight);
// 37 of 200 health checks late, 2 failed; liveness probe failed 12 of 30
// times → 3 restarts".
func openWords(s OpenSummary, o OpenLoop) string {
	parts := []string{fmt.Sprintf("%d sent at %.1f/s (generator lag p99 %s, at most %d in flight)",
		s.All.Sent, s.Achieved, fmtWords(s.LagP99), s.PeakInFlight)}
	h := fmt.Sprintf("%d of %d health checks late", s.LateProbes, s.Probes)
	if s.FailedProbes > 0 {
		h += fmt.Sprintf(" (%d failed)", s.FailedProbes)
	}
	if s.LateProbes > 0 {
		h += ", the slowest " + fmtWords(s.HealthMax)
	}
	parts = append(parts, h)
	l := fmt.Sprintf("liveness probe failed %d of %d times", s.LivenessFailed, s.Liveness)
	switch s.Restarts {
	case 0:
		l += ": no restart"
	default:
		l += " → " + plural(s.Restarts, "restart")
	}
	parts = append(parts, l)
	if s.Stalls > 0 {
		parts = append(parts, fmt.Sprintf("loops stalled %s in all (%d×)", fmtWords(s.Stalled), s.Stalls))
	}
	return strings.Join(parts, "; ")
}

func renderRouteTable(tw *textWriter, s OpenSummary) {
	width := len("route")
	for _, r := range s.Routes {
		width = max(width, len(r.Route))
	}
	head := fmt.Sprintf("  %-*s %7s %7s  %-8s %-8s %-8s %-8s %s", width, "route", "sent", "ok", "p50", "p90", "p99", "max", "failed")
	tw.style(ansiDim, head)
	tw.printf("\n")
	rows := s.Routes
	if len(rows) > 1 {
		rows = append(rows[:len(rows):len(rows)], s.All)
	}
	for _, r := range rows {
		tw.printf("  %-*s %7d %7d  %-8s %-8s %-8s %-8s ", width, r.Route, r.Sent, r.OK,
			latencyOr(r, r.P50), latencyOr(r, r.P90), latencyOr(r, r.P99), latencyOr(r, r.Max))
		if r.Failed() > 0 {
			tw.style(ansiRed, r.FailedWords())
		} else {
			tw.printf("0")
		}
		tw.printf("\n")
	}
}

func latencyOr(r RouteStats, d time.Duration) string {
	if r.OK == 0 {
		return "–"
	}
	return fmtTable(d)
}
