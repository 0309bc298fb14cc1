package experiment

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix(" /=1, /all-async=9 ,/x")
	if err != nil {
		t.Fatal(err)
	}
	want := Mix{{"/", 1}, {"/all-async", 9}, {"/x", 1}}
	if !slices.Equal(m, want) {
		t.Errorf("ParseMix: %v, want %v", m, want)
	}
	if m.String() != "/=1,/all-async=9,/x=1" || !m.Has("/") || m.Has("/mixed") {
		t.Errorf("String %q, Has", m.String())
	}
	for _, in := range []string{"", "x=1", "/=0", "/=-1", "/=a", "/=1,/=2", "/a b=1", "/=NaN", "/=Inf"} {
		_, err := ParseMix(in)
		if err == nil || !strings.HasPrefix(err.Error(), "--mix ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseMix(%q): %v, want one line naming --mix", in, err)
		}
	}
}

func TestParsePaths(t *testing.T) {
	ps, err := ParsePaths("/, /all-async,/")
	if err != nil || !slices.Equal(ps, []string{"/", "/all-async"}) {
		t.Errorf("ParsePaths: %v %v", ps, err)
	}
	if _, err := ParsePaths("/,mixed"); err == nil || !strings.HasPrefix(err.Error(), "--paths ") {
		t.Errorf("ParsePaths(/,mixed): %v", err)
	}
}

func TestOpenLoopValidateNamesTheFlag(t *testing.T) {
	good := OpenLoop{Rate: 50, Duration: 20 * time.Second, Mix: Mix{{"/", 1}}}
	if err := good.Validate(); err != nil || good.Arrivals() != 1000 {
		t.Fatalf("good: %v, %d arrivals", err, good.Arrivals())
	}
	for _, tc := range []struct {
		flag string
		o    OpenLoop
	}{
		{"--rate", OpenLoop{Rate: 0, Duration: time.Second, Mix: good.Mix}},
		{"--rate", OpenLoop{Rate: MaxRate + 1, Duration: time.Second, Mix: good.Mix}},
		{"--duration", OpenLoop{Rate: 1, Duration: 0, Mix: good.Mix}},
		{"--rate", OpenLoop{Rate: 0.1, Duration: time.Second, Mix: good.Mix}}, // no request at all
		{"--rate", OpenLoop{Rate: 2000, Duration: time.Hour, Mix: good.Mix}},  // too many
		{"--mix", OpenLoop{Rate: 1, Duration: time.Second}},
	} {
		err := tc.o.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line naming %s", tc.o, err, tc.flag)
		}
	}
}

// The schedule is what the generator controls: exactly rate × duration
// arrivals, uniform over the window (so the rate holds in every part of
// it), with gaps as irregular as a Poisson process's, and the routes in
// the mix's proportions — the same for the same seed.
func TestScheduleIsPoissonAtTheAskedRate(t *testing.T) {
	o := OpenLoop{Rate: 1000, Duration: 100 * time.Second, Mix: Mix{{"/mixed", 1}, {"/all-async", 9}}, Seed: 7}
	s := o.Schedule()
	if len(s) != 100000 {
		t.Fatalf("%d arrivals, want exactly 100000", len(s))
	}
	if !slices.IsSortedFunc(s, func(a, b arrival) int { return int(a.at - b.at) }) {
		t.Fatal("arrivals not in time order")
	}
	if s[0].at < 0 || s[len(s)-1].at >= o.Duration {
		t.Fatalf("arrivals from %v to %v, want within [0, %v)", s[0].at, s[len(s)-1].at, o.Duration)
	}
	// Every tenth of the window holds a tenth of the arrivals, give or take
	// a binomial spread (sd ≈ 95 of 10,000): no ramp, no clumping.
	for k := range 10 {
		lo, hi := time.Duration(k)*o.Duration/10, time.Duration(k+1)*o.Duration/10
		n := 0
		for _, a := range s {
			if a.at >= lo && a.at < hi {
				n++
			}
		}
		if n < 9500 || n > 10500 {
			t.Errorf("window %d: %d arrivals, want 10000 ± 5%%", k, n)
		}
	}
	// Gaps of a Poisson process are exponential: mean 1/rate, and a
	// standard deviation equal to the mean (evenly spaced arrivals: 0).
	var sum, sumSq float64
	for i := 1; i < len(s); i++ {
		g := (s[i].at - s[i-1].at).Seconds()
		sum += g
		sumSq += g * g
	}
	n := float64(len(s) - 1)
	mean := sum / n
	cv := math.Sqrt(sumSq/n-mean*mean) / mean
	if math.Abs(mean-0.001) > 0.00002 || cv < 0.95 || cv > 1.05 {
		t.Errorf("gaps: mean %.6fs (want 0.001), coefficient of variation %.3f (want ≈ 1)", mean, cv)
	}
	mixed := 0
	for _, a := range s {
		if a.route == 0 {
			mixed++
		}
	}
	if mixed < 9700 || mixed > 10300 {
		t.Errorf("%d arrivals to /mixed, want 10%% of 100000 ± 3%%", mixed)
	}
	if again := o.Schedule(); !slices.Equal(again, s) {
		t.Error("same seed, different schedule")
	}
	o.Seed = 8
	if other := o.Schedule(); slices.Equal(other, s) {
		t.Error("another seed, the same schedule")
	}
}

func TestMixPickFollowsTheWeights(t *testing.T) {
	m := Mix{{"/a", 1}, {"/b", 3}}
	counts := [2]int{}
	for i := range 4000 {
		counts[m.pick(float64(i)/4000)]++
	}
	if counts != [2]int{1000, 3000} {
		t.Errorf("picks %v, want [1000 3000]", counts)
	}
	if m.pick(0.9999999999) != 1 {
		t.Error("the top of the range must pick the last entry")
	}
}
