package experiment

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

const (
	// serveGrace is serve's --timeout-graceful-shutdown. Between scenarios
	// nothing is in flight and serve exits at once; after Ctrl+C a worker
	// stuck in a blocking call is killed after this instead of holding us.
	serveGrace = time.Second
	// stopGrace is how long a child may take to exit after SIGTERM before
	// we kill it.
	stopGrace = serveGrace + 4*time.Second
	// readyTimeout bounds a child's start-up; serve adds perWorkerStart for
	// every worker it must boot on a possibly busy machine.
	readyTimeout   = 10 * time.Second
	perWorkerStart = 250 * time.Millisecond
)

// Run starts `demo external`, then runs every scenario against a fresh
// `demo serve`, and returns what it measured. It stops every process it
// started before returning, also when ctx ends (Ctrl+C) or something fails.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bin := cfg.Executable
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the demo binary: %w", err)
		}
	}
	rep = &Report{Settings: cfg.Settings, Started: time.Now()}

	ext, err := startChild("demo external", bin, "external", "--port", "0",
		"--delay", cfg.Delay.String(), "--log-format", "json")
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := stopChild(ext, stopGrace); stopErr != nil && err == nil {
			rep, err = nil, stopErr
		}
	}()
	m, err := ext.WaitLine(ctx, externalRunningRe, 0, readyTimeout)
	if err != nil {
		return nil, err
	}
	extURL := m.Groups[1]

	progress := func(p Progress) {
		if cfg.OnProgress != nil {
			cfg.OnProgress(p)
		}
	}
	for i, s := range cfg.Scenarios {
		p := Progress{Index: i + 1, Total: len(cfg.Scenarios), Scenario: s}
		progress(p)
		began := time.Now()
		res, err := runScenario(ctx, bin, extURL, s, cfg.Settings)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("interrupted during %s: %w", s.Name(), ctx.Err())
			}
			return nil, fmt.Errorf("scenario %s: %w", s.Name(), err)
		}
		rep.Results = append(rep.Results, res)
		p.Done, p.Took = true, time.Since(began)
		progress(p)
	}
	return rep, nil
}

// runScenario starts serve for s, fires the burst, stops serve and reads
// its log to learn when each request started, where, and what stalled.
func runScenario(ctx context.Context, bin, extURL string, s Scenario, st Settings) (res Result, err error) {
	srv, err := startChild("demo serve", bin, "serve", "--port", "0",
		"--workers", strconv.Itoa(s.Workers),
		"--mode", string(s.Mode),
		"--external", extURL,
		"--calls", strconv.Itoa(st.Calls),
		"--threadpool-size", strconv.Itoa(st.ThreadpoolSize),
		"--timeout-graceful-shutdown", serveGrace.String(),
		"--log-format", "json",
		"--no-access-log")
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if stopErr := stopChild(srv, stopGrace); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	m, err := srv.WaitLine(ctx, serveRunningRe, 0, readyTimeout+time.Duration(s.Workers)*perWorkerStart)
	if err != nil {
		return Result{}, err
	}

	// Generous: every request one after the other, three times over.
	serial := time.Duration(s.Concurrency*st.Calls) * st.Delay
	t0, reqs, probes, err := burst(ctx, m.Groups[1], s.Concurrency, st.ProbeInterval, 3*serial+10*time.Second)
	if err != nil {
		return Result{}, err
	}
	res = Result{Scenario: s, Requests: reqs, Probes: probes}
	for _, q := range reqs {
		res.Wall = max(res.Wall, q.Finished)
	}
	// Stop serve first: once it and its workers have exited, every line
	// they logged (the stall reports come after the responses) is in.
	if err := stopChild(srv, stopGrace); err != nil {
		return Result{}, err
	}
	readServerLog(logLines(srv)).apply(&res, t0)
	if res.Failed() == len(res.Requests) {
		return res, errors.New("every request failed: " + res.Requests[0].Err + statusText(res.Requests[0].Status))
	}
	return res, nil
}

func statusText(status int) string {
	if status == 0 {
		return ""
	}
	return fmt.Sprintf("status %d", status)
}
