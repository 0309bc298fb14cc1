package experiment

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Verdict is what a burst against a --target says about its route: does it
// block the server's event loop? Judge explains the rule.
type Verdict struct {
	// BlocksLoop is nil when the evidence is inconclusive.
	BlocksLoop *bool
	// Words names the verdict and its evidence in one sentence.
	Words string

	HealthLate     bool          // health checks were late while the requests were in flight
	LateProbes     int           // how many, of InFlightProbes sent meanwhile
	InFlightProbes int           //
	MaxWait        time.Duration // the slowest of them (answered or not)
	Baseline       time.Duration // the slowest health check before the burst
	LateAfter      time.Duration // what counted as late
	Order          Order         // how the requests' finish times fell
	Rounds         int           // groups of finish times about one request apart
}

// Order is how a burst's requests finished relative to one another.
type Order string

const (
	Together      Order = "together"            // all within about one request's time
	OneAfterOther Order = "one after the other" // each about one request's time after the previous
	InRounds      Order = "in rounds"           // some together, the groups one after the other
	Unknown       Order = "unknown"             // fewer than two answered
)

// Label is "blocks", "does not block" or "inconclusive".
func (v Verdict) Label() string {
	switch {
	case v.BlocksLoop == nil:
		return "inconclusive"
	case *v.BlocksLoop:
		return "blocks"
	}
	return "does not block"
}

// Judge decides whether the route of a --target burst blocks the server's
// event loop, from outside, on two pieces of evidence:
//
//  1. Health checks: the baseline (probes one after the other before the
//     burst) must have answered in time; then, while the burst's requests
//     were in flight, were the health checks late? Late is slower than
//     max(LateAfter, 2 × the slowest baseline answer), or failed; the
//     health checks count as late when at least 2 and at least a quarter of
//     those sent meanwhile were, so that one hiccup of a busy machine, or
//     one probe a blocked worker accepted along with the burst, does not.
//  2. Order: sorted by finish time, do the requests step by about one
//     request's duration (the first to finish took d; a gap of d/2 or more
//     starts a new round)? One round is "together"; as many rounds as
//     requests, "one after the other"; in between, "in rounds". A request
//     quicker than "late" (d below it) is too short to judge either way.
//
// A loop blocked by a request stalls both its health checks and the other
// requests it holds, so: late and not together → blocks; in time and
// together → does not block. When the two disagree the verdict is
// inconclusive, never a guess: with several workers, an idle worker answers
// the health checks while a blocked one holds requests that queue behind
// each other (in time, yet one after the other), and each of several
// workers may take one request and block on it alone (late, yet together).
// "Does not block" assumes the burst had at least as many requests as the
// target has workers; otherwise idle workers can hide a blocked one.
func Judge(r Result, st Settings) Verdict {
	v := Verdict{LateAfter: st.LateAfter(), Order: Unknown}
	n := len(r.Requests)
	subject := fmt.Sprintf("%d requests to %s", n, r.Scenario.Path)
	if n == 1 {
		subject = "the request to " + r.Scenario.Path
	}

	var answered []time.Duration
	for _, p := range r.Baseline {
		if !p.OK() {
			return v.inconclusive(fmt.Sprintf("a health check before the burst failed (%s), so late ones during it would prove nothing", probeFailure(p)))
		}
		answered = append(answered, p.Latency)
	}
	if len(answered) == 0 {
		return v.inconclusive("no health check was answered before the burst")
	}
	v.Baseline = slices.Max(answered)
	if v.Baseline > st.LateAfter() {
		return v.inconclusive(fmt.Sprintf("health checks were already slow before the burst (up to %s, late is after %s): raise --probe-interval", fmtWords(v.Baseline), fmtWords(st.LateAfter())))
	}
	v.LateAfter = max(st.LateAfter(), 2*v.Baseline)

	var finishes []time.Duration
	var inFlightUntil time.Duration
	for _, q := range r.Requests {
		inFlightUntil = max(inFlightUntil, q.Finished)
		if q.OK() {
			finishes = append(finishes, q.Finished)
		}
	}
	for _, p := range r.Probes {
		if p.Sent >= inFlightUntil {
			continue
		}
		v.InFlightProbes++
		v.MaxWait = max(v.MaxWait, p.Latency)
		if !p.OK() || p.Latency > v.LateAfter {
			v.LateProbes++
		}
	}
	if v.InFlightProbes == 0 {
		return v.inconclusive("no health check was sent while the requests were in flight")
	}
	v.HealthLate = v.LateProbes >= 2 && 4*v.LateProbes >= v.InFlightProbes

	if len(finishes) < 2 {
		return v.inconclusive(fmt.Sprintf("only %d of %d requests to %s got a 200, and the order of two or more is needed", len(finishes), n, r.Scenario.Path))
	}
	slices.Sort(finishes)
	if finishes[0] < v.LateAfter {
		// A loop blocked for less than "late" cannot make a health check
		// late, and finish times a few milliseconds apart say nothing.
		return v.inconclusive(fmt.Sprintf("the first request to %s took %s, too short to tell: health checks count as late after %s (lower --probe-interval to judge faster routes)",
			r.Scenario.Path, fmtWords(finishes[0]), fmtWords(v.LateAfter)))
	}
	v.Rounds = 1
	for i := 1; i < len(finishes); i++ {
		if finishes[i]-finishes[i-1] >= finishes[0]/2 {
			v.Rounds++
		}
	}
	switch v.Rounds {
	case 1:
		v.Order = Together
	case len(finishes):
		v.Order = OneAfterOther
	default:
		v.Order = InRounds
	}

	health := v.healthWords(subject)
	order := orderWords(finishes, v.Order, v.Rounds)
	switch {
	case v.HealthLate && v.Order != Together:
		v.BlocksLoop = ptr(true)
		v.Words = "blocks the loop: " + health + "; " + order
	case !v.HealthLate && v.Order == Together:
		v.BlocksLoop = ptr(false)
		v.Words = "does not block the loop: " + health + "; " + order
	case v.HealthLate:
		v.Words = "inconclusive: " + health + ", yet " + order +
			": several workers may each have taken one request and blocked on it alone (fire more requests than the server has workers: --concurrency), or the server was busy for another reason"
	default:
		v.Words = "inconclusive: " + health + ", yet " + order +
			": with several workers an idle one may have answered the health checks while a blocked one held the requests, or the route waits on something shared (a lock, a pool) without blocking the loop"
	}
	return v
}

func (v Verdict) inconclusive(why string) Verdict {
	v.Words = "inconclusive: " + why
	return v
}

// healthWords: "health checks waited up to 4.0 s while 2 requests to /
// were in flight".
func (v Verdict) healthWords(subject string) string {
	verb := "were"
	if strings.HasPrefix(subject, "the request") {
		verb = "was"
	}
	if v.HealthLate {
		return fmt.Sprintf("health checks waited up to %s while %s %s in flight", fmtWords(v.MaxWait), subject, verb)
	}
	s := fmt.Sprintf("health checks answered in time while %s %s in flight", subject, verb)
	if v.LateProbes == 0 {
		s = fmt.Sprintf("health checks answered within %s while %s %s in flight", fmtWords(v.MaxWait), subject, verb)
	} else {
		s += fmt.Sprintf(" (%d of %d waited up to %s)", v.LateProbes, v.InFlightProbes, fmtWords(v.MaxWait))
	}
	return s
}

// orderWords: "they finished at 2.0 s and 4.0 s, one after the other".
func orderWords(finishes []time.Duration, o Order, rounds int) string {
	var at string
	if len(finishes) <= 4 {
		parts := make([]string, len(finishes))
		for i, f := range finishes {
			parts[i] = fmtWords(f)
		}
		at = "at " + joinAnd(parts)
	} else {
		at = fmt.Sprintf("between %s and %s", fmtWords(finishes[0]), fmtWords(finishes[len(finishes)-1]))
	}
	how := string(o)
	if o == InRounds {
		how = fmt.Sprintf("in %d rounds", rounds)
	}
	return "they finished " + at + ", " + how
}

// joinAnd: "a", "a and b", "a, b and c".
func joinAnd(parts []string) string {
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func ptr[T any](v T) *T { return &v }
