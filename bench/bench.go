// Package bench is `demo bench`: it starts the servers it compares — demo's
// event-loop worker, a minimal net/http server with GOMAXPROCS=1 (the
// baseline) and, when available, the peers nginx, fasthttp and Uvicorn — on
// free 127.0.0.1 ports, loads
// them with wrk or its own bounded Go load generator, reads each server's
// CPU time and memory from /proc, and prints one table of absolute numbers
// and ratios against the baseline measured in the same run. The machine is
// shared and noisy, so the ratios, especially requests per server
// CPU-second, are the figures to compare across runs.
//
// Scenarios: keep-alive throughput per worker, pipelined requests, the
// capacity of one async worker (thousands of slow requests in flight,
// probed by a process of its own), scaling to two workers with each way of
// sharing the port, start-up and worker replacement times, and optionally
// what the access log and the blocked-loop detector cost.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Scenario names, in the order they run.
const (
	Throughput = "throughput" // keep-alive GET /healthcheck, per worker
	Pipelined  = "pipelined"  // the same, requests pipelined
	Capacity   = "capacity"   // one async worker holding many slow requests
	Scaling    = "scaling"    // two workers against one
	Startup    = "startup"    // serve --workers 4 ready; a killed worker replaced
	Costs      = "costs"      // access log + blocked-loop detector on vs off, in interleaved rounds (not run by default)
)

// AllScenarios lists every scenario; DefaultScenarios those run by default.
var (
	AllScenarios     = []string{Throughput, Pipelined, Capacity, Scaling, Startup, Costs}
	DefaultScenarios = []string{Throughput, Pipelined, Capacity, Scaling, Startup}
)

// Load generators.
const (
	LoadAuto = "auto" // wrk when on PATH, else the Go generator
	LoadWrk  = "wrk"
	LoadGo   = "go"
)

// Config is what `demo bench` takes. Zero durations and counts are errors,
// except Warmup (no warm-up) and Capacity (skips that scenario).
type Config struct {
	Bin       string   // the demo binary the servers run as (os.Executable())
	Scenarios []string // which of AllScenarios to run

	Duration    time.Duration // load per server and scenario
	Warmup      time.Duration // unmeasured load before each measurement
	Connections int           // keep-alive connections
	Pipeline    int           // requests per pipelined batch
	Load        string        // LoadAuto, LoadWrk or LoadGo
	LoadProcs   int           // GOMAXPROCS of the bench while the Go generator runs
	Repeat      int           // measurements per server and load, interleaved; the median is shown

	Uvicorn bool     // compare with Uvicorn when it is installed
	Pythons []string // interpreters to look for uvicorn in, in order

	Nginx     bool     // compare with nginx when it is installed
	NginxBins []string // names or paths to look for nginx as, in order

	Fasthttp    bool   // compare with fasthttp, built from its own module with the go command
	FasthttpSrc string // that module's directory; "" looks for FasthttpDir in the working directory, then beside Bin
	CacheDir    string // where built peers are kept between runs; "" builds into the scratch directory every run

	Capacity      int           // concurrent GET /all-async, each its own connection
	Delay         time.Duration // demo external's delay in the capacity scenario
	Calls         int           // external calls per /all-async request
	ProbeInterval time.Duration // /healthcheck probes during the capacity run

	NewConns     int           // scaling: new connections, one request each, per socket setup (0 skips)
	NewConnsOver time.Duration // scaling: the steady arrival of NewConns takes this long

	Rounds int // start-up measurements

	CostRounds int           // costs: rounds, each visiting every server once
	CostRound  time.Duration // costs: load per server and round

	Out io.Writer // the report
	Log io.Writer // progress, one line per step
}

// Bounds on what a run may ask for.
const (
	maxCapacity = 50000
	maxNewConns = 50000
	maxRounds   = 20

	maxCostRounds = 500
)

// ParseScenarios reads a comma-separated list of scenario names.
func ParseScenarios(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(AllScenarios, name) {
			return nil, fmt.Errorf("unknown scenario %q: want some of %s", name, strings.Join(AllScenarios, ","))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scenario given")
	}
	return out, nil
}

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	switch {
	case c.Bin == "":
		return errors.New("bench: no demo binary")
	case len(c.Scenarios) == 0:
		return errors.New("bench: no scenario")
	case c.Duration <= 0 || c.Duration > maxLoadDuration:
		return fmt.Errorf("--duration must be positive and at most %v", maxLoadDuration)
	case c.Warmup < 0 || c.Warmup > maxLoadDuration:
		return fmt.Errorf("--warmup must be 0 to %v", maxLoadDuration)
	case c.Connections < 1 || c.Connections > maxLoadConnections:
		return fmt.Errorf("--connections must be 1 to %d", maxLoadConnections)
	case c.Pipeline < 2 || c.Pipeline > maxPipeline:
		return fmt.Errorf("--pipeline must be 2 to %d", maxPipeline)
	case c.Load != LoadAuto && c.Load != LoadWrk && c.Load != LoadGo:
		return fmt.Errorf("--load %q: want auto, wrk or go", c.Load)
	case c.Repeat < 1 || c.Repeat > maxRounds:
		return fmt.Errorf("--repeat must be 1 to %d", maxRounds)
	case c.LoadProcs < 0:
		return errors.New("--load-procs must not be negative")
	case c.Capacity < 0 || c.Capacity > maxCapacity:
		return fmt.Errorf("--capacity must be 0 to %d", maxCapacity)
	case c.Delay <= 0 || c.Delay > time.Minute:
		return errors.New("--delay must be positive and at most 1m")
	case c.Calls < 1 || c.Calls > 10:
		return errors.New("--calls must be 1 to 10")
	case c.ProbeInterval < time.Millisecond:
		return errors.New("--probe-interval must be at least 1ms")
	case c.NewConns < 0 || c.NewConns > maxNewConns:
		return fmt.Errorf("--new-conns must be 0 to %d", maxNewConns)
	case c.NewConns > 0 && (c.NewConnsOver <= 0 || c.NewConnsOver > time.Minute):
		return errors.New("--new-conns-over must be positive and at most 1m")
	case c.Rounds < 1 || c.Rounds > maxRounds:
		return fmt.Errorf("--rounds must be 1 to %d", maxRounds)
	case c.has(Costs) && (c.CostRounds < 1 || c.CostRounds > maxCostRounds):
		return fmt.Errorf("--cost-rounds must be 1 to %d", maxCostRounds)
	case c.has(Costs) && (c.CostRound <= 0 || c.CostRound > maxLoadDuration):
		return fmt.Errorf("--cost-round must be positive and at most %v", maxLoadDuration)
	case c.Nginx && strings.TrimSpace(strings.Join(c.NginxBins, "")) == "":
		return errors.New("--nginx-bin: no name or path to look for nginx as (--nginx=false skips it)")
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(AllScenarios, s) {
			return fmt.Errorf("unknown scenario %q", s)
		}
	}
	return nil
}

func (c *Config) has(s string) bool { return slices.Contains(c.Scenarios, s) }

// Report is what a run measured. Missed lists the targets the run did not
// meet; the table shows them too. A target against a peer that could not run
// is neither met nor missed: Unmeasured lists it.
type Report struct {
	Missed     []string
	Unmeasured []string
}

// runner holds one run's state; every method runs on Run's goroutine
// except where noted.
type runner struct {
	cfg     Config
	scratch string
	wrk     string // path, or "" for the Go generator
	loadDoc string // how the load was generated, for the report
	log     func(format string, args ...any)

	servers int // demo serves started, for their control socket paths

	rows     []measurement
	setups   []socketSetup          // scaling: the --workers 2 setups measured, in order
	spreads  map[string][]spreadRun // scaling: new-connection runs per server name
	costs    *costResult
	capacity *capacityResult
	startup  *startupResult
	notes    []string
	targets  [][3]string // mark, what, measured: filled by render

	missing   []peerMiss        // peers that could not run, and why
	nginx     *nginxLookup      // findNginx's answer, once asked
	fasthttp  *fasthttpLookup   // findFasthttp's build, once made
	versions  map[string]string // row name → what ran, with versions
	wireBytes map[string]int    // row name → bytes of its /healthcheck response
}

// Run runs the configured scenarios and writes the report to cfg.Out. It
// returns an error when a scenario could not run (a server that would not
// start, Ctrl+C); a missed target is not an error but is listed in the
// Report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	scratch, err := os.MkdirTemp("", "demo-bench")
	if err != nil {
		return Report{}, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(scratch)
	r := &runner{cfg: cfg, scratch: scratch, versions: map[string]string{}, wireBytes: map[string]int{}}
	r.log = func(format string, args ...any) { fmt.Fprintf(cfg.Log, "bench: "+format+"\n", args...) }
	if err := r.pickLoad(); err != nil {
		return Report{}, err
	}

	steps := []struct {
		when bool
		run  func(context.Context) error
	}{
		{cfg.has(Throughput) || cfg.has(Pipelined) || cfg.has(Scaling) || cfg.has(Costs), r.runThroughput},
		{cfg.has(Costs), r.runCosts},
		{cfg.has(Capacity) && cfg.Capacity > 0, r.runCapacity},
		{cfg.has(Startup), r.runStartup},
	}
	for _, s := range steps {
		if !s.when {
			continue
		}
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return Report{}, ctx.Err()
			}
			return Report{}, err
		}
	}
	if cfg.has(Capacity) && cfg.Capacity == 0 {
		r.notes = append(r.notes, "capacity: skipped (--capacity 0)")
	}
	return r.render(cfg.Out), nil
}

func (r *runner) pickLoad() error {
	procs := r.cfg.LoadProcs
	if procs == 0 {
		procs = runtime.NumCPU()
	}
	goDoc := fmt.Sprintf("demo's Go generator (GOMAXPROCS=%d)", procs)
	switch r.cfg.Load {
	case LoadGo:
		r.loadDoc = goDoc
	case LoadWrk, LoadAuto:
		path, err := exec.LookPath("wrk")
		if err != nil {
			if r.cfg.Load == LoadWrk {
				return errors.New("--load wrk: wrk is not on PATH (apt-get install wrk)")
			}
			r.loadDoc = goDoc + "; wrk not found"
			return nil
		}
		r.wrk = path
		r.loadDoc = wrkVersion(path) + " -t1"
	}
	return nil
}

// load runs one load with the configured generator.
func (r *runner) load(ctx context.Context, lc loadConfig) (loadResult, error) {
	if r.wrk != "" {
		return runWrk(ctx, r.wrk, r.scratch, lc)
	}
	if p := r.cfg.LoadProcs; p > 0 {
		// Like wrk -t1, the generator keeps to about one core, leaving the
		// other to the server.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(p))
	}
	return runLoad(ctx, lc)
}

// sleepCtx waits d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
