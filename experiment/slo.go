package experiment

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Objective is one service-level objective on request latency, such as
// p99<1s: the 99th percentile of every request's latency must be below a
// second.
type Objective struct {
	Stat      string // "p50", "p90", "p99" or "max"
	Inclusive bool   // <= rather than <
	Bound     time.Duration
}

// String renders the objective the way --slo takes it.
func (o Objective) String() string {
	op := "<"
	if o.Inclusive {
		op = "<="
	}
	return o.Stat + op + fmtBound(o.Bound)
}

func fmtBound(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}

// percent is the objective's percentile, 100 for max.
func (o Objective) percent() float64 {
	if o.Stat == "max" {
		return 100
	}
	p, _ := strconv.Atoi(strings.TrimPrefix(o.Stat, "p"))
	return float64(p)
}

// Met reports whether a measured value meets the objective.
func (o Objective) Met(v time.Duration) bool {
	if o.Inclusive {
		return v <= o.Bound
	}
	return v < o.Bound
}

var objectiveRe = regexp.MustCompile(`^(p50|p90|p99|max)\s*(<=|<)\s*(\S+)$`)

// ParseSLO reads --slo: one or more objectives separated by commas, each a
// statistic (p50, p90, p99 or max), < or <=, and a duration (1s, 250ms) or
// a bare number of seconds (0.5).
func ParseSLO(s string) ([]Objective, error) {
	bad := func(why string) error {
		return fmt.Errorf("--slo %q: %s; want e.g. \"p99<1s\": p50, p90, p99 or max, then < or <=, then a duration such as 250ms or seconds such as 0.25", s, why)
	}
	var out []Objective
	for _, f := range strings.Split(s, ",") {
		m := objectiveRe.FindStringSubmatch(strings.TrimSpace(f))
		if m == nil {
			return nil, bad(fmt.Sprintf("cannot read %q", strings.TrimSpace(f)))
		}
		d, err := time.ParseDuration(m[3])
		if err != nil {
			secs, ferr := strconv.ParseFloat(m[3], 64)
			if ferr != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs > MaxDuration.Seconds() {
				return nil, bad(fmt.Sprintf("%q is neither a duration nor seconds", m[3]))
			}
			d = time.Duration(secs * float64(time.Second))
		}
		if d <= 0 {
			return nil, bad("the bound must be positive")
		}
		out = append(out, Objective{Stat: m[1], Inclusive: m[2] == "<=", Bound: d})
	}
	return out, nil
}

// ObjectiveValue is the objective's statistic over every request r sent: a
// request that failed (timed out, refused, answered 5xx…) counts as slower
// than any bound, since its user got no answer. ok is false when the
// percentile falls on such a request.
func ObjectiveValue(o Objective, r Result) (v time.Duration, ok bool) {
	var ds []time.Duration
	failed := 0
	for _, q := range r.Requests {
		if q.OK() {
			ds = append(ds, q.Latency())
		} else {
			failed++
		}
	}
	total := len(ds) + failed
	if total == 0 {
		return 0, false
	}
	rank := int(math.Ceil(o.percent() / 100 * float64(total)))
	rank = min(max(rank, 1), total)
	if rank > len(ds) {
		return 0, false
	}
	slices.Sort(ds)
	return ds[rank-1], true
}

// SLOResult is how one scenario fared against the objectives.
type SLOResult struct {
	Met      bool
	Values   []time.Duration // per objective; valid where OK
	OK       []bool
	Restarts int     // liveness restarts
	Failed   float64 // share of requests that failed
}

// CheckSLO measures r against objs; meeting them also takes no liveness
// restart.
func CheckSLO(objs []Objective, r Result) SLOResult {
	res := SLOResult{Met: true, Restarts: LivenessRestarts(r.Liveness)}
	for _, o := range objs {
		v, ok := ObjectiveValue(o, r)
		res.Values, res.OK = append(res.Values, v), append(res.OK, ok)
		res.Met = res.Met && ok && o.Met(v)
	}
	res.Met = res.Met && res.Restarts == 0
	if n := len(r.Requests); n > 0 {
		res.Failed = float64(r.Failed()) / float64(n)
	}
	return res
}

// SLOAnswer is the sweep's answer for one mode (or for all scenarios when
// the mode does not matter).
type SLOAnswer struct {
	Mode    Mode
	Workers int // the fewest that met the objectives; 0 when none did
	Line    string
}

// AnswerSLO names, per mode, the fewest workers whose scenario met the
// objectives with no liveness restart — or says that none did and what the
// best one got. Against a --target it says whether the target met them.
func AnswerSLO(rep *Report) []SLOAnswer {
	if len(rep.SLO) == 0 {
		return nil
	}
	var modes []Mode
	for _, r := range rep.Results {
		if r.Scenario.local() && !slices.Contains(modes, r.Scenario.Mode) {
			modes = append(modes, r.Scenario.Mode)
		}
	}
	objs := make([]string, len(rep.SLO))
	for i, o := range rep.SLO {
		objs[i] = o.String()
	}
	goal := strings.Join(objs, " and ") + " with no liveness restart"

	var out []SLOAnswer
	for _, r := range rep.Results {
		if r.Scenario.local() {
			continue
		}
		c := CheckSLO(rep.SLO, r)
		verb := "meets"
		if !c.Met {
			verb = "does not meet"
		}
		out = append(out, SLOAnswer{Line: fmt.Sprintf("%s: %s %s (%s)", rep.Settings.Target, verb, goal, c.describe(rep.SLO))})
	}
	for _, m := range modes {
		prefix := ""
		if len(modes) > 1 {
			prefix = string(m) + ": "
		}
		var (
			tried     []int
			best      *Result
			bestCheck SLOResult
			answer    *SLOAnswer
		)
		for i := range rep.Results {
			r := &rep.Results[i]
			if r.Scenario.Mode != m || !r.Scenario.local() {
				continue
			}
			tried = append(tried, r.Scenario.Workers)
			c := CheckSLO(rep.SLO, *r)
			if c.Met && (answer == nil || r.Scenario.Workers < answer.Workers) {
				answer = &SLOAnswer{Mode: m, Workers: r.Scenario.Workers,
					Line: fmt.Sprintf("%s%s: fewest workers that meet it: %d (%s)", prefix, goal, r.Scenario.Workers, c.describe(rep.SLO))}
			}
			if best == nil || c.better(bestCheck, rep.SLO) {
				best, bestCheck = r, c
			}
		}
		if answer != nil {
			out = append(out, *answer)
			continue
		}
		if best == nil {
			continue
		}
		workers := make([]string, len(tried))
		for i, w := range tried {
			workers[i] = strconv.Itoa(w)
		}
		out = append(out, SLOAnswer{Mode: m, Line: fmt.Sprintf("%s%s: no worker count tried (%s) meets it; the best, %s, got %s",
			prefix, goal, strings.Join(workers, ", "), plural(best.Scenario.Workers, "worker"), bestCheck.describe(rep.SLO))})
	}
	return out
}

// describe: "p99 0.62 s, 0 restarts" or "p99 not reached: 14% of requests
// failed, 3 restarts".
func (c SLOResult) describe(objs []Objective) string {
	var parts []string
	for i, o := range objs {
		if c.OK[i] {
			parts = append(parts, o.Stat+" "+fmtTable(c.Values[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%s not reached: %.0f%% of requests failed", o.Stat, 100*c.Failed))
		}
	}
	return strings.Join(parts, ", ") + ", " + plural(c.Restarts, "liveness restart")
}

// better orders sweep results for "the best one": fewer restarts first,
// then the worst ratio of value to bound (a failed percentile is worst).
func (c SLOResult) better(than SLOResult, objs []Objective) bool {
	if c.Restarts != than.Restarts {
		return c.Restarts < than.Restarts
	}
	return c.worstRatio(objs) < than.worstRatio(objs)
}

func (c SLOResult) worstRatio(objs []Objective) float64 {
	worst := 0.0
	for i, o := range objs {
		if !c.OK[i] {
			return math.Inf(1)
		}
		worst = max(worst, float64(c.Values[i])/float64(o.Bound))
	}
	return worst
}
