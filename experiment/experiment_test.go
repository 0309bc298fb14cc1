package experiment

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func names(ss []Scenario) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name())
	}
	return out
}

func TestMatrix(t *testing.T) {
	if got := names(DefaultScenarios(2)); !slices.Equal(got, []string{"mixed×1", "async×1", "mixed×2", "threadpool×1"}) {
		t.Errorf("default matrix %v", got)
	}
	modes, err := ParseModes("mixed, async,mixed")
	if err != nil || !slices.Equal(modes, []Mode{Mixed, Async}) {
		t.Fatalf("ParseModes: %v %v", modes, err)
	}
	workers, err := ParseWorkers("1,2,4,2")
	if err != nil || !slices.Equal(workers, []int{1, 2, 4}) {
		t.Fatalf("ParseWorkers: %v %v", workers, err)
	}
	m := Matrix(modes, workers, 3)
	if got := names(m); !slices.Equal(got, []string{"mixed×1", "async×1", "mixed×2", "async×2", "mixed×4", "async×4"}) {
		t.Errorf("matrix %v", got)
	}
	if m[0].Concurrency != 3 {
		t.Errorf("concurrency %d", m[0].Concurrency)
	}
}

func TestParseErrorsNameTheFlag(t *testing.T) {
	for _, in := range []string{"mixed,sync", "", "Mixed"} {
		if _, err := ParseModes(in); err == nil || !strings.HasPrefix(err.Error(), "--modes") {
			t.Errorf("ParseModes(%q): %v", in, err)
		}
	}
	for _, in := range []string{"0", "1,x", "", "65", "-1"} {
		if _, err := ParseWorkers(in); err == nil || !strings.HasPrefix(err.Error(), "--workers") {
			t.Errorf("ParseWorkers(%q): %v", in, err)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{Scenarios: DefaultScenarios(2), Settings: testSettings}
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for flag, mutate := range map[string]func(*Config){
		"--delay":           func(c *Config) { c.Delay = 0 },
		"--calls":           func(c *Config) { c.Calls = 0 },
		"--probe-interval":  func(c *Config) { c.ProbeInterval = time.Microsecond },
		"--threadpool-size": func(c *Config) { c.ThreadpoolSize = 0 },
		"--concurrency":     func(c *Config) { c.Scenarios = DefaultScenarios(0) },
		"--workers":         func(c *Config) { c.Scenarios = []Scenario{{Mode: Mixed, Workers: 0, Concurrency: 2, Path: "/"}} },
		"--modes":           func(c *Config) { c.Scenarios = []Scenario{{Mode: "sync", Workers: 1, Concurrency: 2, Path: "/"}} },
	} {
		c := good
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a one-line error naming the flag", flag, err)
		}
	}
}
