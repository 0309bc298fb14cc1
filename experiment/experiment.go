// Package experiment runs the article's experiment end to end and draws it:
// it starts the slow external API and, for each scenario (handler mode ×
// workers), a fresh `demo serve` — both as child processes of the same
// binary — loads it while probing /healthcheck like a load balancer, reads
// the servers' JSON logs to learn when each request really started and
// which worker took it, and says what it measured in plain words.
//
// The load is either a burst (N requests at the same instant, the article's
// story, checked against a simple queueing model) or open-loop arrivals
// (a Poisson process at a given rate, spread over routes by weight, with a
// Kubernetes-style liveness probe and a service-level objective to find how
// many workers a load needs). Against a --target it starts no server at all
// and judges, from outside, whether each route blocks the server's loop.
//
// It drives the binary only through its command line and logs, exactly as a
// user would, so it imports none of the server packages.
//
// Files: experiment.go (the data), run.go (orchestration), target.go
// (a server already running), proc.go and logs.go (child processes and
// their logs), client.go (one request on its own connection), load.go (the
// burst), openloop.go and mix.go (open-loop arrivals), probes.go (health
// and liveness probes), verdict.go (does a route block the loop), slo.go
// (objectives and the workers sweep), stats.go, model.go, summary.go,
// routes.go (numbers and words), render_text.go, render_open.go,
// render_html.go, render_html_open.go, json.go.
package experiment

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"demo/contract"
)

// Mode is the server's --mode: what GET / does. The modes and their list
// are the contract's, which `demo serve` parses them by.
type Mode = contract.Mode

// The server's handler modes, by the contract's names.
const (
	Mixed      = contract.Mixed
	Async      = contract.Async
	Threadpool = contract.Threadpool
)

// Scenario is one cell of the matrix: one `demo serve` configuration (or
// one route of a --target) under one load.
type Scenario struct {
	// Mode is serve's --mode; empty when the load does not use GET / (serve
	// keeps its default) and against a --target.
	Mode Mode
	// Workers is serve's --workers; 0 against a --target.
	Workers int
	// Concurrency is how many requests a burst fires at the same instant;
	// 0 in an open-loop run, whose load is Config.Open.
	Concurrency int
	// Path is the route a burst sends to: "/" locally, one of --paths
	// against a --target.
	Path string
}

// Name is how tables and timelines label the scenario: "mixed×2" locally,
// "/report×2" for a burst to a route of an app file, "2 workers" when
// neither matters (open-loop load over several routes), the path of a
// --target burst.
func (s Scenario) Name() string {
	switch {
	case s.Workers == 0 && s.Path != "":
		return s.Path
	case s.Workers == 0:
		return "target"
	case s.Mode == "" && s.Concurrency > 0:
		return fmt.Sprintf("%s×%d", s.Path, s.Workers)
	case s.Mode == "":
		return plural(s.Workers, "worker")
	}
	return fmt.Sprintf("%s×%d", s.Mode, s.Workers)
}

// local reports whether the scenario runs against a server demo starts.
func (s Scenario) local() bool { return s.Workers > 0 }

// DefaultScenarios is the matrix that tells the article's story: blocking
// code stalls one worker (mixed×1), going async fixes it (async×1), more
// workers only hide it (mixed×2), a thread pool is the other honest fix
// (threadpool×1).
func DefaultScenarios(concurrency int) []Scenario {
	return []Scenario{
		{Mode: Mixed, Workers: 1, Concurrency: concurrency, Path: "/"},
		{Mode: Async, Workers: 1, Concurrency: concurrency, Path: "/"},
		{Mode: Mixed, Workers: 2, Concurrency: concurrency, Path: "/"},
		{Mode: Threadpool, Workers: 1, Concurrency: concurrency, Path: "/"},
	}
}

// Matrix is the cross product of workers and modes, worker counts outermost
// so that scenarios with the same number of workers sit next to each other.
// Concurrency 0 makes open-loop scenarios; a nil modes list one scenario
// per worker count with serve's default mode.
func Matrix(modes []Mode, workers []int, concurrency int) []Scenario {
	if len(modes) == 0 {
		modes = []Mode{""}
	}
	var out []Scenario
	for _, w := range workers {
		for _, m := range modes {
			out = append(out, Scenario{Mode: m, Workers: w, Concurrency: concurrency, Path: "/"})
		}
	}
	return out
}

// AppScenarios is the matrix for an app file: per worker count, a burst to
// each of paths, or one open-loop scenario when concurrency is 0.
func AppScenarios(paths []string, workers []int, concurrency int) []Scenario {
	if concurrency == 0 {
		return Matrix(nil, workers, 0)
	}
	var out []Scenario
	for _, w := range workers {
		for _, p := range paths {
			out = append(out, Scenario{Workers: w, Concurrency: concurrency, Path: p})
		}
	}
	return out
}

// TargetScenarios is one burst per path against a --target, or a single
// open-loop scenario when concurrency is 0.
func TargetScenarios(paths []string, concurrency int) []Scenario {
	if concurrency == 0 {
		return []Scenario{{}}
	}
	out := make([]Scenario, len(paths))
	for i, p := range paths {
		out[i] = Scenario{Concurrency: concurrency, Path: p}
	}
	return out
}

// ParseModes reads a comma-separated list such as "mixed,async"; repeated
// entries count once.
func ParseModes(s string) ([]Mode, error) {
	var out []Mode
	for _, f := range strings.Split(s, ",") {
		m := Mode(strings.TrimSpace(f))
		if !slices.Contains(contract.Modes, m) {
			return nil, fmt.Errorf("--modes %q: %q is not one of %s", s, m, contract.JoinModes(", "))
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// MaxWorkers bounds --workers: every scenario starts that many processes.
const MaxWorkers = 64

// MaxConcurrency bounds --concurrency: each request holds a socket in the
// experiment and in the server's backlog.
const MaxConcurrency = 1000

// ParseWorkers reads a comma-separated list of worker counts such as "1,2,4".
func ParseWorkers(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > MaxWorkers {
			return nil, fmt.Errorf("--workers %q: want numbers from 1 to %d", s, MaxWorkers)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Settings are the knobs shared by every scenario.
type Settings struct {
	Delay          time.Duration // how long the external API takes per call
	Calls          int           // sequential external calls per request
	ProbeInterval  time.Duration // one health probe this often
	ThreadpoolSize int           // threadpool mode's pool, per worker
	// RequestTimeout is how long a request (or a health probe) may take
	// before it counts as failed with cause "timeout"; 0 picks a default
	// (see requestTimeout).
	RequestTimeout time.Duration
	// Healthcheck is the probes' path; empty means /healthcheck.
	Healthcheck string
	// Open, when set, replaces the bursts with open-loop arrivals.
	Open *OpenLoop
	// Target, when set, is the base URL of a server already running: demo
	// starts none.
	Target string
	// App, when set, is the app file every `demo serve` serves instead of
	// the built-in app; Calls and the scenarios' modes do not apply.
	App *App
	// BuiltinRoutes, without App or Target, are the built-in app's GET
	// routes, which a mix must pick from besides the health check (the
	// caller knows the app; this package does not import it). Empty: not
	// checked.
	BuiltinRoutes []string
}

// App is an app file the servers of a run serve (serve's --app).
type App struct {
	File string // as given on the command line; serve reads it
	// Routes are its GET routes: what a burst loads, and the default mix.
	Routes []string
}

// ModelSkipped says in one line why a burst's model check is not made, or
// is "" when it is.
func (s Settings) ModelSkipped() string {
	if s.App == nil {
		return ""
	}
	return fmt.Sprintf("Model check skipped: its formulas are for the built-in app's modes (%s), not for the routes of %s",
		contract.JoinModes(", "), s.App.File)
}

// LateAfter is when a health probe counts as late: in a burst, when a load
// balancer probing every interval would have noticed; under open-loop load,
// after a second, a typical health check's timeout.
func (s Settings) LateAfter() time.Duration {
	if s.Open != nil {
		return OpenLateAfter
	}
	return 2 * s.ProbeInterval
}

// OpenLateAfter is when a health check counts as late under open-loop load:
// the timeout of the liveness probe, and a common load-balancer timeout.
const OpenLateAfter = time.Second

// healthPath is the path health probes go to.
func (s Settings) healthPath() string {
	if s.Healthcheck == "" {
		return "/healthcheck"
	}
	return s.Healthcheck
}

// Progress tells a watcher which scenario is running.
type Progress struct {
	Index, Total int // 1-based position of Scenario among Total
	Scenario     Scenario
	Done         bool          // false when the scenario starts, true when it ended
	Took         time.Duration // valid when Done
	// What describes the load in a few words ("50 requests/s for 20s, 2
	// workers"); empty means a burst of Scenario.Concurrency requests.
	What string
}

// Config is what Run needs.
type Config struct {
	// Executable is the demo binary to start; empty means os.Executable().
	Executable string
	Scenarios  []Scenario
	Settings
	// OnProgress, if set, is called from Run's goroutine as scenarios start
	// and end; it must not block for long.
	OnProgress func(Progress)
}

// Validate checks the configuration before any process starts; its errors
// name the flag at fault.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Scenarios) == 0 {
		errs = append(errs, errors.New("no scenarios to run"))
	}
	if c.App != nil {
		if err := c.App.check(c.Target, c.Open, c.healthPath()); err != nil {
			errs = append(errs, err)
		}
	}
	if c.App == nil && c.Target == "" && c.Open != nil && len(c.BuiltinRoutes) > 0 {
		for _, p := range c.Open.Mix.Paths() {
			if p != c.healthPath() && !slices.Contains(c.BuiltinRoutes, p) {
				errs = append(errs, fmt.Errorf("--mix: %s is not a GET route of the built-in app (its routes: %s; --app serves your own)", p, strings.Join(c.BuiltinRoutes, ", ")))
				break
			}
		}
	}
	for _, s := range c.Scenarios {
		if c.Target == "" && s.Mode != "" && !slices.Contains(contract.Modes, s.Mode) {
			errs = append(errs, fmt.Errorf("--modes: unknown mode %q", s.Mode))
		}
		if c.App != nil && s.Mode != "" {
			errs = append(errs, errors.New("--modes picks what the built-in app's GET / does; with --app the file's routes are loaded"))
		}
		if c.App != nil && s.Concurrency > 0 && !slices.Contains(c.App.Routes, s.Path) {
			errs = append(errs, fmt.Errorf("%s is not a GET route of %s", s.Path, c.App.File))
		}
		if c.Target == "" && (s.Workers < 1 || s.Workers > MaxWorkers) {
			errs = append(errs, fmt.Errorf("--workers must be 1 to %d, got %d", MaxWorkers, s.Workers))
		}
		if c.Open == nil && (s.Concurrency < 1 || s.Concurrency > MaxConcurrency) {
			errs = append(errs, fmt.Errorf("--concurrency must be 1 to %d, got %d", MaxConcurrency, s.Concurrency))
		}
	}
	if c.Open != nil {
		if err := c.Open.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case c.Delay <= 0:
		errs = append(errs, fmt.Errorf("--delay must be positive, got %v", c.Delay))
	case c.Calls < 1 && c.App == nil:
		errs = append(errs, fmt.Errorf("--calls must be at least 1, got %d", c.Calls))
	case c.ProbeInterval < time.Millisecond:
		errs = append(errs, fmt.Errorf("--probe-interval must be at least 1ms, got %v", c.ProbeInterval))
	case c.ThreadpoolSize < 1:
		errs = append(errs, fmt.Errorf("--threadpool-size must be at least 1, got %d", c.ThreadpoolSize))
	case c.RequestTimeout < 0:
		errs = append(errs, fmt.Errorf("--request-timeout must not be negative, got %v", c.RequestTimeout))
	}
	if len(errs) > 0 {
		return errs[0] // one line: the first problem is enough to act on
	}
	return nil
}

// check: an app file serves the servers demo starts, every route of its
// mix is one of the file's (or the health check, built into every app),
// and it has a route to load at all.
func (a *App) check(target string, open *OpenLoop, health string) error {
	switch {
	case target != "":
		return errors.New("--app configures the servers demo starts; with --target it starts none")
	case len(a.Routes) == 0:
		return fmt.Errorf("--app %s: no GET route to load", a.File)
	case open == nil:
		return nil
	}
	for _, p := range open.Mix.Paths() {
		if p != health && !slices.Contains(a.Routes, p) {
			return fmt.Errorf("--mix: %s is not a GET route of %s (its routes: %s)", p, a.File, strings.Join(a.Routes, ", "))
		}
	}
	return nil
}

// Request is one request of a scenario. Times are offsets from the
// instant the burst was fired or the open-loop arrivals began.
type Request struct {
	Index int    // 1-based
	Route string // the path requested
	ID    string // the server's request id (X-Request-ID), empty if it never answered
	// Worker is the index of the worker that logged "started processing",
	// 0 if unknown.
	Worker int
	// Scheduled is when the request was meant to leave: 0 in a burst, its
	// arrival time under open-loop load.
	Scheduled time.Duration
	Sent      time.Duration // when the client began to connect
	Started   time.Duration // when the server logged "started processing"; valid if HasStart
	HasStart  bool
	Finished  time.Duration // when the whole response had arrived (or the request failed)
	Status    int           // 0 when the request failed
	Err       string
	Cause     string // why it failed, one of the Cause constants or "HTTP 503"; "" if it did not
}

// Latency is how long the client waited, counted from when the request was
// scheduled to leave: a late generator must not make the server look
// faster than it is.
func (r Request) Latency() time.Duration { return r.Finished - min(r.Scheduled, r.Sent) }

// Lag is how late the request left after its scheduled time.
func (r Request) Lag() time.Duration { return max(r.Sent-r.Scheduled, 0) }

// OK reports whether the request got a 200.
func (r Request) OK() bool { return r.Status == 200 && r.Err == "" }

// Probe is one health probe.
type Probe struct {
	Sent    time.Duration
	Latency time.Duration
	Status  int // 0 when the probe failed
	Err     string
	Cause   string // why it failed; "" if it got an answer
}

// OK reports whether the probe got a 200.
func (p Probe) OK() bool { return p.Status == 200 && p.Err == "" }

// Stall is one "event loop blocked" report of a worker.
type Stall struct {
	Worker    int
	Start     time.Duration // offset of the stall's start (its log line came at the end)
	Duration  time.Duration
	RequestID string
	Cause     string // e.g. "GET /"
}

// Result is everything measured in one scenario.
type Result struct {
	Scenario Scenario
	Requests []Request
	Probes   []Probe
	Stalls   []Stall
	// Wall runs from the burst (or the first arrival) to the last
	// request's end.
	Wall time.Duration
	// Baseline holds the health probes sent, one after the other, just
	// before a --target burst: how fast the server answers when idle.
	Baseline []Probe
	// Liveness holds the Kubernetes-style liveness probes of an open-loop
	// run (see LivenessRestarts).
	Liveness []Probe
	// PeakInFlight is the most requests the generator had in flight at
	// once in an open-loop run.
	PeakInFlight int
}

// Report is the outcome of Run.
type Report struct {
	Settings Settings
	Started  time.Time
	Results  []Result
	// SLO, when set, asks which worker count meets these objectives (see
	// AnswerSLO); the renderers show the answer.
	SLO []Objective
}
