package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"demo/experiment"
)

// exitInterrupted is the conventional status of a program ended by Ctrl+C.
const exitInterrupted = 130

func experimentCommand() *cli.Command {
	return &cli.Command{
		Name:  "experiment",
		Usage: "run the article's experiment by itself and draw it",
		Description: "Starts its own `demo external` and, for each scenario, a fresh `demo serve`, fires\n" +
			"concurrent requests at the same instant while probing /healthcheck like a load\n" +
			"balancer, then prints a table, a timeline per scenario and a model check.\n\n" +
			"The default matrix tells the story: mixed×1 (blocking call in the loop: requests\n" +
			"queue, health checks stall), async×1 (the fix), mixed×2 (more workers only hide\n" +
			"it), threadpool×1 (the other fix). With --modes or --workers the matrix is their\n" +
			"cross product.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "modes", Value: "mixed,async,threadpool", Usage: "comma-separated handler modes to run (with --workers: their cross product)", DefaultText: "the story: mixed×1, async×1, mixed×2, threadpool×1"},
			&cli.StringFlag{Name: "workers", Value: "1", Usage: "comma-separated worker counts to run, e.g. 1,2,4 (with --modes: their cross product)", DefaultText: "1"},
			&cli.IntFlag{Name: "concurrency", Value: 2, Usage: "requests fired at the same instant in each scenario"},
			&cli.DurationFlag{Name: "delay", Value: 2 * time.Second, Usage: "how long the external API takes per call"},
			&cli.IntFlag{Name: "calls", Value: 2, Usage: "sequential external API calls per request"},
			&cli.DurationFlag{Name: "probe-interval", Value: 100 * time.Millisecond, Usage: "send a /healthcheck probe this often while requests run"},
			&cli.IntFlag{Name: "threadpool-size", Value: 40, Usage: "threadpool mode: blocking calls each worker may run at once"},
			&cli.StringFlag{Name: "report", Usage: "also write a self-contained HTML report to `FILE`"},
			&cli.StringFlag{Name: "json", Usage: "also write every measured event and the summaries as JSON to `FILE`"},
		},
		Action: runExperiment,
	}
}

func experimentConfig(c *cli.Context) (experiment.Config, error) {
	concurrency := c.Int("concurrency")
	if concurrency < 1 || concurrency > experiment.MaxConcurrency {
		return experiment.Config{}, badFlag("--concurrency must be 1 to %d, got %d", experiment.MaxConcurrency, concurrency)
	}
	scenarios := experiment.DefaultScenarios(concurrency)
	if c.IsSet("modes") || c.IsSet("workers") {
		modes, err := experiment.ParseModes(c.String("modes"))
		if err != nil {
			return experiment.Config{}, badFlag("%v", err)
		}
		workers, err := experiment.ParseWorkers(c.String("workers"))
		if err != nil {
			return experiment.Config{}, badFlag("%v", err)
		}
		scenarios = experiment.Matrix(modes, workers, concurrency)
	}
	cfg := experiment.Config{
		Scenarios: scenarios,
		Settings: experiment.Settings{
			Delay:          c.Duration("delay"),
			Calls:          c.Int("calls"),
			ProbeInterval:  c.Duration("probe-interval"),
			ThreadpoolSize: c.Int("threadpool-size"),
		},
	}
	if err := cfg.Validate(); err != nil {
		return experiment.Config{}, badFlag("%v", err)
	}
	// Fail before a long run, not after it, when an output cannot be written.
	for _, flag := range []string{"report", "json"} {
		if path := c.String(flag); path != "" {
			if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
				return experiment.Config{}, badFlag("--%s %q: no such directory %q", flag, path, filepath.Dir(path))
			}
		}
	}
	if c.NArg() > 0 {
		return experiment.Config{}, badFlag("demo experiment takes no arguments, got %q", c.Args().First())
	}
	return cfg, nil
}

func runExperiment(c *cli.Context) error {
	cfg, err := experimentConfig(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl+C we clean up; a second one kills us at once
	// (the children still die with us, by Pdeathsig).
	context.AfterFunc(ctx, stop)

	out := os.Stdout
	progress := experiment.NewProgressLine(out, experiment.IsTerminal(out))
	cfg.OnProgress = progress.Update
	rep, err := experiment.Run(ctx, cfg)
	progress.Close()
	if err != nil {
		if ctx.Err() != nil && c.Context.Err() == nil {
			return cli.Exit("experiment interrupted; every process it started is stopped", exitInterrupted)
		}
		return fmt.Errorf("experiment: %w", err)
	}

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
