package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"demo/appspec"
	"demo/contract"
	"demo/experiment"
)

// exitInterrupted is the conventional status of a program ended by Ctrl+C.
const exitInterrupted = 130

func experimentCommand() *cli.Command {
	return &cli.Command{
		Name:  "experiment",
		Usage: "run the article's experiment by itself and draw it; load like production; judge any server",
		Description: "Starts its own `demo external` and, for each scenario, a fresh `demo serve`, fires\n" +
			"concurrent requests at the same instant while probing /healthcheck like a load\n" +
			"balancer, then prints a table, a timeline per scenario and a model check.\n\n" +
			"The default matrix tells the story: mixed×1 (blocking call in the loop: requests\n" +
			"queue, health checks stall), async×1 (the fix), mixed×2 (more workers only hide\n" +
			"it), threadpool×1 (the other fix). With --modes or --workers the matrix is their\n" +
			"cross product.\n\n" +
			"--rate R --duration D replaces the burst with open-loop arrivals: R requests a\n" +
			"second, arriving at random like real users' whether or not earlier ones were\n" +
			"answered, spread over --mix; per route it counts failures by cause and latency\n" +
			"percentiles, and runs a Kubernetes-style liveness probe. With --slo \"p99<1s\" and\n" +
			"--workers 1,2,4,8 it names the fewest workers that meet the objective.\n\n" +
			"--app FILE serves your app file instead of the built-in app: a burst per GET route,\n" +
			"or with --rate its routes alike (--mix picks others).\n\n" +
			"--target http://HOST:PORT starts nothing and loads a server already running\n" +
			"(yours): a burst per --paths route, judging whether it blocks the event loop.\n\n" +
			"Results go to stdout, progress to stderr.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "modes", Value: contract.JoinModes(","), Usage: "comma-separated handler modes to run (with --workers: their cross product)", DefaultText: "the story: mixed×1, async×1, mixed×2, threadpool×1"},
			&cli.StringFlag{Name: "workers", Value: "1", Usage: "comma-separated worker counts to run, e.g. 1,2,4 (with --modes: their cross product)", DefaultText: "1"},
			&cli.IntFlag{Name: "concurrency", Value: 2, Usage: "requests fired at the same instant in each scenario (a burst)"},
			&cli.DurationFlag{Name: "delay", Value: 2 * time.Second, Usage: "how long the external API takes per call"},
			&cli.IntFlag{Name: "calls", Value: 2, Usage: "sequential external API calls per request"},
			&cli.DurationFlag{Name: "probe-interval", Value: 100 * time.Millisecond, Usage: "send a health check this often while requests run"},
			&cli.IntFlag{Name: "threadpool-size", Value: 40, Usage: "threadpool mode: blocking calls each worker may run at once"},
			&cli.Float64Flag{Name: "rate", Usage: "open loop: `R` requests a second arrive at random (a Poisson process) instead of a burst", DefaultText: "off: a burst"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "open loop: how long requests arrive"},
			&cli.StringFlag{Name: "mix", Usage: "open loop: routes and weights, e.g. \"/mixed=1,/all-async=9\"", DefaultText: "/, or every --paths route alike"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "open loop: seed of the arrivals; the same seed gives every scenario the same arrivals"},
			&cli.StringFlag{Name: "slo", Usage: "open loop: latency objective over every request, e.g. \"p99<1s\" (p50, p90, p99 or max; < or <=; failed requests count as too slow); with --workers, names the fewest workers that meet it with no liveness restart"},
			&cli.StringFlag{Name: "app", Usage: "serve this app `FILE` (see demo app) in every scenario instead of the built-in app"},
			&cli.StringFlag{Name: "target", Usage: "base `URL` of a server already running, e.g. http://127.0.0.1:8000: start nothing and load it"},
			&cli.StringFlag{Name: "paths", Value: "/", Usage: "with --target: comma-separated routes, one burst each"},
			&cli.StringFlag{Name: "healthcheck", Value: "/healthcheck", Usage: "with --target: the path health checks probe (must answer 200)"},
			&cli.DurationFlag{Name: "request-timeout", Usage: "a request not answered within this fails (cause: timeout), and so does a health check (under --rate, after 5s at most)", DefaultText: "10s with --rate; a burst: 1m with --target, else long enough for every request to run one after the other"},
			&cli.StringFlag{Name: "report", Usage: "also write a self-contained HTML report to `FILE`"},
			&cli.StringFlag{Name: "json", Usage: "also write every request, probe and summary as JSON to `FILE`"},
		},
		Action: runExperiment,
	}
}

// Flags that only make sense with another one.
var (
	openLoopFlags    = []string{"duration", "mix", "seed", "slo"}
	targetOnlyFlags  = []string{"paths", "healthcheck"}
	localServerFlags = []string{"modes", "workers", "delay", "calls", "threadpool-size", "app"}
)

func experimentConfig(c *cli.Context) (experiment.Config, []experiment.Objective, error) {
	if c.NArg() > 0 {
		return experiment.Config{}, nil, badFlag("demo experiment takes no arguments, got %q", c.Args().First())
	}
	openLoop, target := c.IsSet("rate"), c.IsSet("target")
	for _, f := range openLoopFlags {
		if c.IsSet(f) && !openLoop {
			return experiment.Config{}, nil, badFlag("--%s is for open-loop runs: give --rate too", f)
		}
	}
	for _, f := range targetOnlyFlags {
		if c.IsSet(f) && !target {
			return experiment.Config{}, nil, badFlag("--%s is for a --target; the servers demo starts answer /healthcheck and --modes picks what / does", f)
		}
	}
	if target {
		for _, f := range localServerFlags {
			if c.IsSet(f) {
				return experiment.Config{}, nil, badFlag("--%s configures the servers demo starts; with --target it starts none", f)
			}
		}
	}
	app, err := experimentApp(c)
	if err != nil {
		return experiment.Config{}, nil, err
	}
	if openLoop && c.IsSet("concurrency") {
		return experiment.Config{}, nil, badFlag("--concurrency is the burst's; with --rate requests arrive open-loop")
	}
	if openLoop && target && c.IsSet("paths") && c.IsSet("mix") {
		return experiment.Config{}, nil, badFlag("--paths and --mix both pick routes: with --rate give them in --mix")
	}

	concurrency := c.Int("concurrency") // its range is experiment.Config.Validate's
	burstSize := concurrency
	if openLoop {
		burstSize = 0
	}
	cfg := experiment.Config{
		Settings: experiment.Settings{
			Delay:          c.Duration("delay"),
			Calls:          c.Int("calls"),
			ProbeInterval:  c.Duration("probe-interval"),
			ThreadpoolSize: c.Int("threadpool-size"),
			RequestTimeout: c.Duration("request-timeout"),
			App:            app,
		},
	}
	if app != nil {
		cfg.Calls = 0 // the file's steps make the calls
	} else if !target {
		routes, err := builtinRoutes()
		if err != nil {
			return experiment.Config{}, nil, err
		}
		cfg.BuiltinRoutes = routes
	}
	if c.IsSet("request-timeout") && cfg.RequestTimeout <= 0 {
		return experiment.Config{}, nil, badFlag("--request-timeout must be positive, got %v", cfg.RequestTimeout)
	}

	var paths []string
	if target {
		cfg.Target = strings.TrimRight(c.String("target"), "/")
		hc := c.String("healthcheck")
		if _, err := experiment.ParsePaths(hc); err != nil || strings.Contains(hc, ",") {
			return experiment.Config{}, nil, badFlag("--healthcheck %q: want one path, e.g. /healthcheck", hc)
		}
		cfg.Healthcheck = hc
		var err error
		if paths, err = experiment.ParsePaths(c.String("paths")); err != nil {
			return experiment.Config{}, nil, badFlag("%v", err)
		}
	}

	var objectives []experiment.Objective
	if openLoop {
		o := &experiment.OpenLoop{Rate: c.Float64("rate"), Duration: c.Duration("duration"), Seed: c.Uint64("seed")}
		switch {
		case c.IsSet("mix"):
			m, err := experiment.ParseMix(c.String("mix"))
			if err != nil {
				return experiment.Config{}, nil, badFlag("%v", err)
			}
			o.Mix = m
		case target:
			o.Mix = experiment.EvenMix(paths)
		case app != nil:
			o.Mix = experiment.EvenMix(app.Routes)
		default:
			o.Mix = experiment.EvenMix([]string{"/"})
		}
		cfg.Open = o
		if c.IsSet("slo") {
			var err error
			if objectives, err = experiment.ParseSLO(c.String("slo")); err != nil {
				return experiment.Config{}, nil, badFlag("%v", err)
			}
		}
	}

	switch {
	case target:
		cfg.Scenarios = experiment.TargetScenarios(paths, burstSize)
	case app != nil:
		workers, err := experiment.ParseWorkers(c.String("workers"))
		if err != nil {
			return experiment.Config{}, nil, badFlag("%v", err)
		}
		cfg.Scenarios = experiment.AppScenarios(app.Routes, workers, burstSize)
	case c.IsSet("modes") || c.IsSet("workers") || (openLoop && !cfg.Open.Mix.Has("/")):
		workers, err := experiment.ParseWorkers(c.String("workers"))
		if err != nil {
			return experiment.Config{}, nil, badFlag("%v", err)
		}
		var modes []experiment.Mode
		// An open-loop mix that never sends to / leaves the mode without
		// effect: one scenario per worker count, not one per mode.
		if c.IsSet("modes") || !openLoop || cfg.Open.Mix.Has("/") {
			if modes, err = experiment.ParseModes(c.String("modes")); err != nil {
				return experiment.Config{}, nil, badFlag("%v", err)
			}
		}
		cfg.Scenarios = experiment.Matrix(modes, workers, burstSize)
	default:
		cfg.Scenarios = experiment.DefaultScenarios(burstSize)
	}
	if err := cfg.Validate(); err != nil {
		return experiment.Config{}, nil, badFlag("%v", err)
	}
	// Fail before a long run, not after it, when an output cannot be written.
	for _, flag := range []string{"report", "json"} {
		if path := c.String(flag); path != "" {
			if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
				return experiment.Config{}, nil, badFlag("--%s %q: no such directory %q", flag, path, filepath.Dir(path))
			}
		}
	}
	return cfg, objectives, nil
}

// experimentApp reads --app: the file, checked as `demo app check` checks
// it (a bad one is one line, FILE:LINE:COL, and exit 2 before anything
// starts), and its GET routes, which the experiment loads. Nil without
// --app.
func experimentApp(c *cli.Context) (*experiment.App, error) {
	path := c.String("app")
	if path == "" {
		return nil, nil
	}
	for _, name := range []string{"modes", "calls"} {
		if c.IsSet(name) {
			return nil, badFlag("--%s is for the built-in app; with --app the file says what each route does (--mix picks among its routes)", name)
		}
	}
	spec, err := appspec.Load(path)
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return &experiment.App{File: path, Routes: getRoutes(spec)}, nil
}

// getRoutes lists an app's GET routes: the ones an experiment can load.
func getRoutes(spec *appspec.App) []string {
	var routes []string
	for _, r := range spec.Routes {
		if r.Method == http.MethodGet {
			routes = append(routes, r.Path)
		}
	}
	return routes
}

// builtinRoutes lists the built-in app's GET routes, for the experiment to
// check a --mix against; its GET / is there whatever the mode.
func builtinRoutes() ([]string, error) {
	spec, err := appspec.Builtin(contract.Mixed, 2)
	if err != nil {
		return nil, fmt.Errorf("the built-in app: %w", err)
	}
	return getRoutes(spec), nil
}

func runExperiment(c *cli.Context) error {
	cfg, objectives, err := experimentConfig(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl+C we clean up; a second one kills us at once
	// (the children still die with us, by Pdeathsig).
	context.AfterFunc(ctx, stop)

	// Results on stdout, progress on stderr: `demo experiment > out.txt`
	// keeps only the results.
	out := os.Stdout
	progress := experiment.NewProgressLine(os.Stderr, experiment.IsTerminal(os.Stderr))
	cfg.OnProgress = progress.Update
	rep, err := experiment.Run(ctx, cfg)
	progress.Close()
	if err != nil {
		var badTarget *experiment.BadTargetError
		var badApp *experiment.BadAppError
		switch {
		case ctx.Err() != nil && c.Context.Err() == nil:
			return cli.Exit("experiment interrupted; every process it started is stopped", exitInterrupted)
		case errors.As(err, &badTarget), errors.As(err, &badApp):
			return badFlag("%v", err)
		}
		return fmt.Errorf("experiment: %w", err)
	}
	rep.SLO = objectives

	if err := experiment.RenderText(out, rep, experiment.TextOptions{Color: experiment.ColorEnabled(out)}); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	var errs []error
	if path := c.String("report"); path != "" {
		errs = append(errs, writeOutput(path, rep, experiment.RenderHTML))
	}
	if path := c.String("json"); path != "" {
		errs = append(errs, writeOutput(path, rep, experiment.WriteJSON))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if cfg.Open != nil {
		return nil // failures under load are what the run measured, not errors
	}
	for _, r := range rep.Results {
		if n := r.Failed(); n > 0 {
			return fmt.Errorf("experiment: %d of %d requests failed in %s", n, len(r.Requests), r.Scenario.Name())
		}
	}
	return nil
}

func writeOutput(path string, rep *experiment.Report, render func(io.Writer, *experiment.Report) error) error {
	var buf bytes.Buffer
	if err := render(&buf, rep); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	return nil
}
