package experiment

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MixEntry is one route of a Mix and its share of the arrivals.
type MixEntry struct {
	Path   string
	Weight float64
}

// Mix spreads open-loop arrivals over routes by weight: "/=1,/all-async=9"
// sends a tenth of them to / and the rest to /all-async.
type Mix []MixEntry

// ParseMix reads a --mix value: comma-separated PATH=WEIGHT entries, a
// bare PATH meaning weight 1. Paths start with a slash; weights are
// positive numbers; a path may appear once.
func ParseMix(s string) (Mix, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("--mix %q: %s", s, fmt.Sprintf(format, args...))
	}
	var m Mix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		path, w, hasWeight := strings.Cut(f, "=")
		path = strings.TrimSpace(path)
		if err := checkPath(path); err != nil {
			return nil, bad("%v", err)
		}
		weight := 1.0
		if hasWeight {
			var err error
			weight, err = strconv.ParseFloat(strings.TrimSpace(w), 64)
			if err != nil || !(weight > 0) || math.IsInf(weight, 0) {
				return nil, bad("the weight of %s must be a positive number, got %q", path, w)
			}
		}
		if slices.ContainsFunc(m, func(e MixEntry) bool { return e.Path == path }) {
			return nil, bad("%s appears twice", path)
		}
		m = append(m, MixEntry{path, weight})
	}
	return m, nil
}

// checkPath accepts what can follow GET in a request line: a slash, then
// visible characters.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q is not a path: start it with /", p)
	}
	for _, r := range p {
		if r <= ' ' || r >= 0x7f {
			return fmt.Errorf("path %q has a space or a character outside visible ASCII", p)
		}
	}
	return nil
}

// ParsePaths reads a --paths value: comma-separated paths, each once.
func ParsePaths(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		p := strings.TrimSpace(f)
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("--paths %q: %v", s, err)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// EvenMix gives each path the same weight.
func EvenMix(paths []string) Mix {
	m := make(Mix, len(paths))
	for i, p := range paths {
		m[i] = MixEntry{p, 1}
	}
	return m
}

// String renders the mix the way --mix takes it.
func (m Mix) String() string {
	parts := make([]string, len(m))
	for i, e := range m {
		parts[i] = e.Path + "=" + strconv.FormatFloat(e.Weight, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// Paths lists the mix's routes in order.
func (m Mix) Paths() []string {
	out := make([]string, len(m))
	for i, e := range m {
		out[i] = e.Path
	}
	return out
}

// Has reports whether the mix sends anything to path.
func (m Mix) Has(path string) bool {
	return slices.ContainsFunc(m, func(e MixEntry) bool { return e.Path == path })
}

// pick maps u in [0, 1) to an entry's index, each with its weight's share.
func (m Mix) pick(u float64) int {
	var total float64
	for _, e := range m {
		total += e.Weight
	}
	x := u * total
	for i, e := range m {
		if x < e.Weight {
			return i
		}
		x -= e.Weight
	}
	return len(m) - 1 // rounding at the very top
}

// OpenLoop is an open-loop load: requests arrive at Rate per second for
// Duration whether or not earlier ones were answered, as real users do,
// spread over Mix.
type OpenLoop struct {
	Rate     float64 // arrivals per second
	Duration time.Duration
	Mix      Mix
	Seed     uint64 // the same seed gives the same arrivals, in every scenario
}

// Bounds that keep a typo from turning the experiment into a flood, or its
// records into gigabytes.
const (
	MaxRate     = 20000
	MaxArrivals = 500000
	MaxDuration = time.Hour
)

// Arrivals is how many requests the load sends: the rate times the
// duration, rounded.
func (o OpenLoop) Arrivals() int { return int(math.Round(o.Rate * o.Duration.Seconds())) }

// Validate checks the load; errors name the flag at fault.
func (o OpenLoop) Validate() error {
	switch {
	case !(o.Rate > 0) || o.Rate > MaxRate:
		return fmt.Errorf("--rate must be more than 0 and at most %d requests a second, got %g", MaxRate, o.Rate)
	case o.Duration <= 0 || o.Duration > MaxDuration:
		return fmt.Errorf("--duration must be positive and at most %v, got %v", MaxDuration, o.Duration)
	case o.Arrivals() < 1:
		return fmt.Errorf("--rate %g for --duration %v makes no request: ask for at least one", o.Rate, o.Duration)
	case o.Arrivals() > MaxArrivals:
		return fmt.Errorf("--rate %g for --duration %v makes %d requests, more than the %d one run may send", o.Rate, o.Duration, o.Arrivals(), MaxArrivals)
	case len(o.Mix) == 0:
		return fmt.Errorf("--mix names no route")
	}
	return nil
}

// arrival is one scheduled request: when, and to which entry of the mix.
type arrival struct {
	at    time.Duration
	route int
}

// Schedule lays out the arrivals: exactly Arrivals() of them, each placed
// uniformly at random in [0, Duration) and then sorted. Those are the
// arrival times of a Poisson process of rate Rate conditioned on its count
// (given how many arrivals a Poisson process has in an interval, their
// times are independent and uniform), so the gaps between requests are as
// bursty as real users' (nearly exponential) while the asked rate is met
// exactly, not give or take a Poisson count's √(R·D). Each arrival then
// picks its route by the mix's weights. The generator is seeded: every
// scenario of a run, and every run with the same seed, sees the same
// arrivals, so a workers sweep compares like with like.
func (o OpenLoop) Schedule() []arrival {
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	n := o.Arrivals()
	out := make([]arrival, n)
	for i := range out {
		out[i].at = time.Duration(rng.Float64() * float64(o.Duration))
	}
	slices.SortFunc(out, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	for i := range out {
		out[i].route = o.Mix.pick(rng.Float64())
	}
	return out
}
