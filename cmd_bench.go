package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"demo/bench"
	"demo/contract"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure demo against net/http (and nginx, fasthttp and Uvicorn when available) and print ratios",
		Description: "Starts its own servers on free 127.0.0.1 ports — `demo serve --mode async`, a minimal\n" +
			"net/http server with GOMAXPROCS=1 and the peers it can run: nginx with one worker process when\n" +
			"installed, fasthttp with GOMAXPROCS=1 (built with the go command from " + bench.FasthttpDir + "),\n" +
			"Uvicorn when python3 can import uvicorn and fastapi — loads them with wrk (when on PATH) or\n" +
			"a Go load generator, reads each server's CPU time from /proc and prints one table with\n" +
			"ratios against net/http and each peer from the same run, and which peers it could not run.\n\n" +
			"Scenarios: throughput (keep-alive /healthcheck), pipelined, capacity (one async worker\n" +
			"holding --capacity slow requests), scaling (--workers 2 against 1, for each way of sharing\n" +
			"the port), startup (ready and worker replacement times), costs (access log and blocked-loop\n" +
			"detector on vs off, in many short interleaved rounds; not run by default).",
		OnUsageError: usageError,
		// The only subcommand is the hidden probe process: no `help` entry.
		HideHelpCommand: true,
		Subcommands:     []*cli.Command{benchProbeCommand()},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scenarios", Value: strings.Join(bench.DefaultScenarios, ","), Usage: "comma-separated scenarios to run: " + strings.Join(bench.AllScenarios, ",")},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "measured load per server and scenario (wrk rounds to whole seconds)"},
			&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "unmeasured load before each measurement"},
			&cli.IntFlag{Name: "connections", Value: 64, Usage: "keep-alive connections of the load generator"},
			&cli.IntFlag{Name: "repeat", Value: 1, Usage: "measure each server this many times, interleaved, and show the median (a noisy machine)"},
			&cli.IntFlag{Name: "pipeline", Value: 16, Usage: "requests per pipelined batch"},
			&cli.StringFlag{Name: "load", Value: bench.LoadAuto, Usage: "load generator: auto (wrk when on PATH), wrk or go"},
			&cli.IntFlag{Name: "load-procs", Value: 1, Usage: "GOMAXPROCS of the bench while the Go generator runs (0: all CPUs)"},
			&cli.BoolFlag{Name: "uvicorn", Value: true, Usage: "also measure Uvicorn + FastAPI when installed (--uvicorn=false skips it)"},
			&cli.StringFlag{Name: "python", Value: "python3,/usr/bin/python3", Usage: "comma-separated interpreters to look for uvicorn in"},
			&cli.BoolFlag{Name: "nginx", Value: true, Usage: "also measure nginx (one worker process) when installed (--nginx=false skips it)"},
			&cli.StringFlag{Name: "nginx-bin", Value: "nginx,/usr/sbin/nginx", Usage: "comma-separated names or paths to look for nginx as"},
			&cli.BoolFlag{Name: "fasthttp", Value: true, Usage: "also measure fasthttp (GOMAXPROCS=1), built with the go command from " + bench.FasthttpDir + " (--fasthttp=false skips it)"},
			&cli.StringFlag{Name: "fasthttp-src", Usage: "the fasthttp peer's module directory (default: " + bench.FasthttpDir + " in the working directory or beside the demo binary)"},
			&cli.IntFlag{Name: "capacity", Value: 10000, Usage: "capacity: concurrent GET /all-async requests, each on its own connection (0 skips)"},
			&cli.DurationFlag{Name: "delay", Value: time.Second, Usage: "capacity: demo external's delay per call"},
			&cli.IntFlag{Name: "calls", Value: 2, Usage: "capacity: sequential external calls per request"},
			&cli.DurationFlag{Name: "probe-interval", Value: 20 * time.Millisecond, Usage: "capacity: send a /healthcheck probe on a fresh connection this often (from a process of its own)"},
			&cli.IntFlag{Name: "new-conns", Value: 3000, Usage: "scaling: new connections, one request each, arriving steadily, to see how each setup spreads them (0 skips)"},
			&cli.DurationFlag{Name: "new-conns-over", Value: 2 * time.Second, Usage: "scaling: how long the arrival of --new-conns takes"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "startup: measurements of start-up and worker replacement"},
			&cli.IntFlag{Name: "cost-rounds", Value: 30, Usage: "costs: rounds, each loading every server once in turn; the cost is the median of the rounds' own ratios"},
			&cli.DurationFlag{Name: "cost-round", Value: time.Second, Usage: "costs: load per server and round (wrk rounds to whole seconds)"},
			&cli.BoolFlag{Name: "check", Usage: "exit 1 when a target is missed (one against a peer that could not run is not measured, and does not count)"},
		},
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	scenarios, err := bench.ParseScenarios(c.String("scenarios"))
	if err != nil {
		return badFlag("--scenarios: %v", err)
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find own executable: %w", err)
	}
	cfg := bench.Config{
		Bin:           bin,
		Scenarios:     scenarios,
		Duration:      c.Duration("duration"),
		Warmup:        c.Duration("warmup"),
		Connections:   c.Int("connections"),
		Pipeline:      c.Int("pipeline"),
		Load:          c.String("load"),
		LoadProcs:     c.Int("load-procs"),
		Repeat:        c.Int("repeat"),
		Uvicorn:       c.Bool("uvicorn"),
		Pythons:       strings.Split(c.String("python"), ","),
		Nginx:         c.Bool("nginx"),
		NginxBins:     strings.Split(c.String("nginx-bin"), ","),
		Fasthttp:      c.Bool("fasthttp"),
		FasthttpSrc:   c.String("fasthttp-src"),
		CacheDir:      benchCacheDir(),
		Capacity:      c.Int("capacity"),
		Delay:         c.Duration("delay"),
		Calls:         c.Int("calls"),
		ProbeInterval: c.Duration("probe-interval"),
		NewConns:      c.Int("new-conns"),
		NewConnsOver:  c.Duration("new-conns-over"),
		Rounds:        c.Int("rounds"),
		CostRounds:    c.Int("cost-rounds"),
		CostRound:     c.Duration("cost-round"),
		Out:           os.Stdout,
		Log:           os.Stderr,
	}
	if err := cfg.Validate(); err != nil {
		return badFlag("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	switch {
	case ctx.Err() != nil:
		return cli.Exit("bench interrupted", exitInterrupted)
	case err != nil:
		return err
	case c.Bool("check") && len(rep.Missed) > 0:
		return cli.Exit(fmt.Sprintf("bench: %d target(s) missed", len(rep.Missed)), exitError)
	}
	return nil
}

// benchCacheDir is where the bench keeps the peers it builds (fasthttp)
// between runs: the user's cache directory, or none (build every run).
func benchCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "demo", "bench")
}

// benchProbeCommand is the probe process of the capacity scenario: the
// bench runs it as a child so that its probes are not scheduled among the
// bench's own goroutines (thousands during a burst). It prints one JSON
// line (bench.ProbeResult) when SIGTERM or SIGINT tells it to stop.
func benchProbeCommand() *cli.Command {
	return &cli.Command{
		Name:         "probe",
		Usage:        "GET a URL on a fresh connection every --interval until SIGTERM, then print the latencies as JSON (started by bench)",
		Hidden:       true,
		OnUsageError: usageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Usage: "http://127.0.0.1:PORT/path to probe"},
			&cli.DurationFlag{Name: "interval", Value: 20 * time.Millisecond, Usage: "time between probes"},
			&cli.DurationFlag{Name: "timeout", Value: bench.ProbeTimeout, Usage: "a probe slower than this fails"},
		},
		Action: runBenchProbe,
	}
}

func runBenchProbe(c *cli.Context) error {
	url := c.String("url")
	if url == "" {
		return badFlag("--url is required")
	}
	if c.Duration("interval") < time.Millisecond || c.Duration("timeout") <= 0 {
		return badFlag("--interval must be at least 1ms and --timeout positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := bench.Probe(ctx, url, c.Duration("interval"), c.Duration("timeout"), func() {
		// The bench waits for this line before it starts the burst.
		fmt.Fprintf(os.Stderr, "demo bench probe: probing %s every %v\n", url, c.Duration("interval"))
	})
	if err != nil {
		return badFlag("%v", err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return fmt.Errorf("bench probe: %w", err)
	}
	return nil
}

// baselineCommand is the net/http server `demo bench` compares with, built
// from the project's own code (package bench) so the comparison needs
// nothing but this binary.
func baselineCommand() *cli.Command {
	return &cli.Command{
		Name:         "baseline",
		Usage:        "a minimal net/http server with GOMAXPROCS=1 serving /healthcheck (started by bench)",
		Hidden:       true,
		OnUsageError: usageError,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to bind"},
			&cli.IntFlag{Name: "port", Value: 8000, Usage: "port to bind (0 picks a free one)"},
		}, logFlags()...),
		Action: runBaseline,
	}
}

func runBaseline(c *cli.Context) error {
	serving()
	logger, err := newLogger(c, "", 0)
	if err != nil {
		return err
	}
	defer logger.Close()
	port := c.Int("port")
	if port < 0 || port > 65535 {
		return badFlag("--port must be 0-65535, got %d", port)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.String("host"), strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = bench.ServeBaseline(ctx, ln, func(url string) {
		logger.Info(contract.RunningMsg(contract.BaselineName, url, "net/http", "GOMAXPROCS=1"), contract.RunningFields(url))
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
