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

func TestValidateAppFile(t *testing.T) {
	app := &App{File: "app.toml", Routes: []string{"/blocking", "/awaited"}}
	st := testSettings
	st.App, st.Calls = app, 0
	burst := Config{Scenarios: AppScenarios(app.Routes, []int{1, 2}, 2), Settings: st}
	if err := burst.Validate(); err != nil {
		t.Fatalf("bursts to the file's routes: %v", err)
	}
	if names := []string{burst.Scenarios[0].Name(), burst.Scenarios[3].Name()}; names[0] != "/blocking×1" || names[1] != "/awaited×2" {
		t.Errorf("scenario names %q", names)
	}
	open := burst
	open.Open = &OpenLoop{Rate: 10, Duration: time.Second, Mix: EvenMix(app.Routes), Seed: 1}
	open.Scenarios = AppScenarios(app.Routes, []int{1, 2}, 0)
	if err := open.Validate(); err != nil || len(open.Scenarios) != 2 || open.Scenarios[1].Name() != "2 workers" {
		t.Fatalf("open loop over the file's routes: %v %+v", err, open.Scenarios)
	}
	for want, mutate := range map[string]func(*Config){
		"--modes picks what the built-in app's GET / does": func(c *Config) { c.Scenarios = Matrix([]Mode{Mixed}, []int{1}, 2) },
		"--mix: /other is not a GET route of app.toml (its routes: /blocking, /awaited)": func(c *Config) {
			c.Open = &OpenLoop{Rate: 10, Duration: time.Second, Mix: EvenMix([]string{"/awaited", "/other"}), Seed: 1}
			c.Scenarios = AppScenarios(app.Routes, []int{1}, 0)
		},
		"/other is not a GET route of app.toml":    func(c *Config) { c.Scenarios = AppScenarios([]string{"/other"}, []int{1}, 2) },
		"--app configures the servers demo starts": func(c *Config) { c.Target = "http://127.0.0.1:1" },
		"--app app.toml: no GET route to load":     func(c *Config) { c.App = &App{File: "app.toml"} },
	} {
		c := burst
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v, want one line starting %q", err, want)
		}
	}
}
