// Package experiment runs the article's experiment end to end and draws it:
// it starts the slow external API and, for each scenario (handler mode ×
// workers), a fresh `demo serve` — both as child processes of the same
// binary — fires concurrent requests at one instant while probing
// /healthcheck like a load balancer, reads the servers' JSON logs to learn
// when each request really started and which worker took it, and compares
// what it measured with a simple queueing model.
//
// It drives the binary only through its command line and logs, exactly as a
// user would, so it imports none of the server packages.
//
// Files: run.go (orchestration), proc.go (child processes), load.go
// (requests and probes), logs.go (parsing the servers' logs), stats.go,
// model.go, summary.go (plain words), render_text.go, render_html.go, json.go.
package experiment

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mode is the server's --mode: what GET / does.
type Mode string

// The server's handler modes (see DESIGN.md).
const (
	Mixed      Mode = "mixed"
	Async      Mode = "async"
	Threadpool Mode = "threadpool"
)

// Modes lists every mode in the order help text shows them.
var Modes = []Mode{Mixed, Async, Threadpool}

// Scenario is one cell of the matrix: one `demo serve` configuration under
// one burst of concurrent requests.
type Scenario struct {
	Mode        Mode
	Workers     int
	Concurrency int // requests fired at the same instant
}

// Name is how tables and timelines label the scenario, e.g. "mixed×2".
func (s Scenario) Name() string { return fmt.Sprintf("%s×%d", s.Mode, s.Workers) }

// DefaultScenarios is the matrix that tells the article's story: blocking
// code stalls one worker (mixed×1), going async fixes it (async×1), more
// workers only hide it (mixed×2), a thread pool is the other honest fix
// (threadpool×1).
func DefaultScenarios(concurrency int) []Scenario {
	return []Scenario{
		{Mixed, 1, concurrency},
		{Async, 1, concurrency},
		{Mixed, 2, concurrency},
		{Threadpool, 1, concurrency},
	}
}

// Matrix is the cross product of workers and modes, worker counts outermost
// so that scenarios with the same number of workers sit next to each other.
func Matrix(modes []Mode, workers []int, concurrency int) []Scenario {
	var out []Scenario
	for _, w := range workers {
		for _, m := range modes {
			out = append(out, Scenario{m, w, concurrency})
		}
	}
	return out
}

// ParseModes reads a comma-separated list such as "mixed,async"; repeated
// entries count once.
func ParseModes(s string) ([]Mode, error) {
	var out []Mode
	for _, f := range strings.Split(s, ",") {
		m := Mode(strings.TrimSpace(f))
		if !slices.Contains(Modes, m) {
			return nil, fmt.Errorf("--modes %q: %q is not one of mixed, async, threadpool", s, m)
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
	ProbeInterval  time.Duration // one /healthcheck probe this often
	ThreadpoolSize int           // threadpool mode's pool, per worker
}

// LateAfter is when a health probe counts as late: a load balancer probing
// every interval would have noticed by then.
func (s Settings) LateAfter() time.Duration { return 2 * s.ProbeInterval }

// Progress tells a watcher which scenario is running.
type Progress struct {
	Index, Total int // 1-based position of Scenario among Total
	Scenario     Scenario
	Done         bool          // false when the scenario starts, true when it ended
	Took         time.Duration // valid when Done
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
	for _, s := range c.Scenarios {
		if !slices.Contains(Modes, s.Mode) {
			errs = append(errs, fmt.Errorf("--modes: unknown mode %q", s.Mode))
		}
		if s.Workers < 1 || s.Workers > MaxWorkers {
			errs = append(errs, fmt.Errorf("--workers must be 1 to %d, got %d", MaxWorkers, s.Workers))
		}
		if s.Concurrency < 1 || s.Concurrency > MaxConcurrency {
			errs = append(errs, fmt.Errorf("--concurrency must be 1 to %d, got %d", MaxConcurrency, s.Concurrency))
		}
	}
	switch {
	case c.Delay <= 0:
		errs = append(errs, fmt.Errorf("--delay must be positive, got %v", c.Delay))
	case c.Calls < 1:
		errs = append(errs, fmt.Errorf("--calls must be at least 1, got %d", c.Calls))
	case c.ProbeInterval < time.Millisecond:
		errs = append(errs, fmt.Errorf("--probe-interval must be at least 1ms, got %v", c.ProbeInterval))
	case c.ThreadpoolSize < 1:
		errs = append(errs, fmt.Errorf("--threadpool-size must be at least 1, got %d", c.ThreadpoolSize))
	}
	if len(errs) > 0 {
		return errs[0] // one line: the first problem is enough to act on
	}
	return nil
}

// Request is one of the concurrent requests of a scenario. Times are
// offsets from the instant the burst was fired.
type Request struct {
	Index    int    // 1-based
	ID       string // the server's request id (X-Request-ID), empty if it never answered
	Worker   int    // index of the worker that logged "started processing", 0 if unknown
	Sent     time.Duration
	Started  time.Duration // when the server logged "started processing"; valid if HasStart
	HasStart bool
	Finished time.Duration // when the whole response had arrived (or the request failed)
	Status   int           // 0 when the request failed
	Err      string
}

// Latency is how long the client waited.
func (r Request) Latency() time.Duration { return r.Finished - r.Sent }

// OK reports whether the request got a 200.
func (r Request) OK() bool { return r.Status == 200 && r.Err == "" }

// Probe is one /healthcheck probe.
type Probe struct {
	Sent    time.Duration
	Latency time.Duration
	Status  int // 0 when the probe failed
	Err     string
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
	// Wall runs from the burst to the last request's end.
	Wall time.Duration
}

// Report is the outcome of Run.
type Report struct {
	Settings Settings
	Started  time.Time
	Results  []Result
}
