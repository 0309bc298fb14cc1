package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"demo/experiment"
)

// twoRoutes is an app file with a route that holds the loop for one
// external call and one that awaits it.
const twoRoutes = `
[routes."/blocking"]
def = "async"
steps = [{ call = "external", blocking = true }]

[routes."/awaited"]
def = "async"
steps = [{ call = "external" }]
`

// TestExperimentAppFileBursts: with --app, every scenario's serve serves
// the file, one burst per route; the blocking route's requests serialise
// and the awaited one's overlap; the model check says in one line why it
// is not made.
func TestExperimentAppFileBursts(t *testing.T) {
	file := writeApp(t, "app.toml", twoRoutes)
	jsonPath := filepath.Join(t.TempDir(), "run.json")
	r := startExperiment(t, "--app", file, "--delay", "300ms", "--json", jsonPath)
	if code := r.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("experiment exited %d", code)
	}
	out := r.stdout.String()
	t.Logf("stdout:\n%s", out)
	if left := markedPids(r.marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	for _, want := range []string{
		"App " + file + " (GET /blocking, /awaited), external API 300ms per call · 2 requests fired at once per route",
		"\n/blocking×1 — ", "\n/awaited×1 — ",
		"\nModel check skipped: its formulas are for the built-in app's modes (mixed, async, threadpool), not for the routes of " + file + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if strings.Contains(out, "Model check (") {
		t.Error("a model check for an app file's routes")
	}
	var doc experimentJSON
	readJSON(t, jsonPath, &doc)
	if len(doc.Scenarios) != 2 {
		t.Fatalf("%d scenarios, want one per route", len(doc.Scenarios))
	}
	if l := doc.latencies("/blocking×1"); len(l) != 2 || l[1] < 1.8*l[0] {
		t.Errorf("/blocking latencies %v: want the second ≥ 1.8× the first, the loop held by the first", l)
	}
	if l := doc.latencies("/awaited×1"); len(l) != 2 || l[1] > 1.5*l[0] {
		t.Errorf("/awaited latencies %v: want the second ≤ 1.5× the first, both overlapping", l)
	}
}

// TestExperimentAppFileSweep: open-loop load spread evenly over the file's
// routes by default, a workers sweep and an objective, with the real
// binary: the servers' JSON logs say which requests stalled a loop, and
// those are the blocking route's.
func TestExperimentAppFileSweep(t *testing.T) {
	file := writeApp(t, "app.toml", twoRoutes)
	jsonPath := filepath.Join(t.TempDir(), "run.json")
	r := startExperiment(t, "--app", file, "--rate", "6", "--duration", "2s", "--delay", "150ms",
		"--workers", "1,2", "--slo", "p99<2s", "--json", jsonPath)
	if code := r.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("experiment exited %d", code)
	}
	out := r.stdout.String()
	t.Logf("stdout:\n%s", out)
	if left := markedPids(r.marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	if !strings.HasPrefix(out, "App "+file+" (GET /blocking, /awaited), external API 150ms per call · open loop: 6 requests/s for 2s (Poisson arrivals, seed 1) to /blocking=1,/awaited=1 · ") {
		t.Errorf("stdout does not start with the app's settings line")
	}
	if !regexp.MustCompile(`\nSLO p99<2s with no liveness restart: (fewest workers that meet it: [12] |no worker count tried)`).MatchString(out) {
		t.Error("stdout lacks the one-line answer to the objective")
	}

	var doc openLoopJSON
	readJSON(t, jsonPath, &doc)
	if len(doc.Scenarios) != 2 || doc.Scenarios[0].Name != "1 worker" || doc.Scenarios[1].Name != "2 workers" {
		t.Fatalf("scenarios %+v, want 1 worker and 2 workers", doc.Scenarios)
	}
	fewest := 0
	for _, s := range doc.Scenarios {
		var routes []string
		for _, rt := range s.Routes {
			routes = append(routes, rt.Route)
			if rt.Sent == 0 {
				t.Errorf("%s: nothing sent to %s", s.Name, rt.Route)
			}
		}
		if !slices.Contains(routes, "/blocking") || !slices.Contains(routes, "/awaited") {
			t.Errorf("%s: routes %v, want the file's two", s.Name, routes)
		}
		for _, q := range s.Requests {
			if q.Status == 200 && q.Started == nil {
				t.Errorf("%s: request %+v answered, but no start read from the server's log", s.Name, q)
				break
			}
		}
		if s.SLOMet == nil {
			t.Fatalf("%s: no verdict on the objective", s.Name)
		}
		if *s.SLOMet && fewest == 0 {
			fewest = s.Workers
		}
	}
	if len(doc.SLO) != 1 || doc.SLO[0].Workers != fewest {
		t.Errorf("SLO answer %+v, want fewest workers %d as the scenarios' verdicts say", doc.SLO, fewest)
	}

	// Every stall the workers reported names a request to /blocking.
	var run experimentJSON
	readJSON(t, jsonPath, &run)
	route := map[string]string{}
	for _, e := range run.Events {
		if e.Kind == "finished" {
			route[e.ID] = e.Route
		}
	}
	stalls := 0
	for _, e := range run.Events {
		if e.Kind != "stall" || e.ID == "" {
			continue
		}
		stalls++
		if route[e.ID] != "/blocking" {
			t.Errorf("a stall of request %s, a request to %q: want only /blocking's", e.ID, route[e.ID])
		}
	}
	if stalls == 0 {
		t.Error("no stall read from the servers' logs: /blocking holds the loop for 150 ms a request")
	}
}

// TestExperimentAppFileBadInput: a bad file, or flags that make no sense
// with one, end in one line and exit 2 before anything starts.
func TestExperimentAppFileBadInput(t *testing.T) {
	t.Parallel()
	good := writeApp(t, "app.toml", twoRoutes)
	bad := writeApp(t, "bad.toml", "[routes.\"/x\"]\ndef = \"sync\"\nsteps = [{ sleep = \"1s\" }]\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--app", bad}, bad + ":3:10: 'await' outside async function"},
		{[]string{"--app", good, "--modes", "mixed"}, "--modes is for the built-in app"},
		{[]string{"--app", good, "--rate", "5", "--mix", "/elsewhere"}, "--mix: /elsewhere is not a GET route of " + good},
		{[]string{"--app", good, "--target", "http://127.0.0.1:1"}, "--app configures the servers demo starts"},
	} {
		r := startExperiment(t, tc.args...)
		if code := r.wait(t, 10*time.Second); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr.String()), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "demo: "+tc.want) {
			t.Errorf("%v: stderr %q, want one line starting %q", tc.args, r.stderr, "demo: "+tc.want)
		}
		if r.stdout.Len() > 0 {
			t.Errorf("%v: stdout %q, want nothing", tc.args, r.stdout)
		}
		if left := markedPids(r.marker); len(left) > 0 {
			t.Errorf("%v: processes left behind: %v", tc.args, left)
		}
	}
}

// TestExperimentRunStopsWhenServeRefusesTheApp: a file that changed into a
// bad one after it was checked is refused by the first serve; the run
// stops there, before any load, with serve's one line.
func TestExperimentRunStopsWhenServeRefusesTheApp(t *testing.T) {
	bad := writeApp(t, "bad.toml", "[routes.\"/x\"]\ndef = \"async\"\nsteps = [{ cpu = \"forever\" }]\n")
	// The children Run starts inherit the marker (see startExperiment).
	marker := "E2E_EXPERIMENT_MARKER=" + t.Name()
	t.Setenv("E2E_EXPERIMENT_MARKER", t.Name())
	app := &experiment.App{File: bad, Routes: []string{"/x"}}
	cfg := experiment.Config{
		Executable: demoBin,
		Scenarios:  experiment.AppScenarios(app.Routes, []int{1}, 2),
		Settings:   experiment.Settings{Delay: 100 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, ThreadpoolSize: 4, App: app},
	}
	_, err := experiment.Run(context.Background(), cfg)
	var refused *experiment.BadAppError
	if !errors.As(err, &refused) || !strings.HasPrefix(err.Error(), bad+":3:18: cpu \"forever\"") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Run: %v, want serve's one line naming %s:3:18", err, bad)
	}
	if left := markedPids(marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}
