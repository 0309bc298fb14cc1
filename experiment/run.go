package experiment

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"demo/childproc"
	"demo/contract"
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

// OpenProbeTimeout is when a health check under open-loop load gives up
// and counts as failed: a load balancer's usual health-check timeout (an
// AWS ALB's default is 5 s), and it keeps the run from waiting on probes
// stuck behind a queue long after the last request ended.
const OpenProbeTimeout = 5 * time.Second

// Default request timeouts, when --request-timeout is not given.
const (
	// openTimeout: under open-loop load a client gives up after this, as
	// users and proxies do; the request counts as failed ("timeout").
	openTimeout = 10 * time.Second
	// slowBurstTimeout: a --target's route, or an app file's, may be slow;
	// we do not know how slow.
	slowBurstTimeout = time.Minute
)

// requestTimeout is how long a request of scenario s may take.
func (st Settings) requestTimeout(s Scenario) time.Duration {
	switch {
	case st.RequestTimeout > 0:
		return st.RequestTimeout
	case st.Open != nil:
		return openTimeout
	case !s.local() || st.App != nil:
		return slowBurstTimeout
	}
	// Generous: every request one after the other, three times over.
	serial := time.Duration(s.Concurrency*st.Calls) * st.Delay
	return 3*serial + 10*time.Second
}

// Run runs every scenario and returns what it measured: against the
// --target if there is one, else against a fresh `demo serve` per scenario,
// all calling one `demo external` started first. It stops every process it
// started before returning, also when ctx ends (Ctrl+C) or something fails.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep = &Report{Settings: cfg.Settings, Started: time.Now()}
	var serverFor func(context.Context, Scenario) (*server, error)
	if cfg.Target != "" {
		ep, err := CheckTarget(ctx, cfg.Target, cfg.healthPath())
		if err != nil {
			return nil, err
		}
		serverFor = func(context.Context, Scenario) (*server, error) { return &server{ep: ep, name: cfg.Target}, nil }
	} else {
		bin := cfg.Executable
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("find the demo binary: %w", err)
			}
		}
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
		running, err := waitEvent(ctx, ext, contract.EventRunning, readyTimeout)
		if err != nil {
			return nil, err
		}
		extURL := running.URL
		serverFor = func(ctx context.Context, s Scenario) (*server, error) {
			return startServe(ctx, bin, extURL, s, cfg.Settings)
		}
	}

	for i, s := range cfg.Scenarios {
		p := Progress{Index: i + 1, Total: len(cfg.Scenarios), Scenario: s, What: cfg.describeLoad(s)}
		if cfg.OnProgress != nil {
			cfg.OnProgress(p)
		}
		began := time.Now()
		res, err := runScenario(ctx, serverFor, s, cfg.Settings)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("interrupted during %s: %w", s.Name(), ctx.Err())
			}
			var down *downError
			var refused *BadAppError
			if errors.As(err, &down) || errors.As(err, &refused) {
				return nil, err
			}
			return nil, fmt.Errorf("scenario %s: %w", s.Name(), err)
		}
		rep.Results = append(rep.Results, res)
		p.Done, p.Took = true, time.Since(began)
		if cfg.OnProgress != nil {
			cfg.OnProgress(p)
		}
	}
	return rep, nil
}

// describeLoad says in a few words what scenario s will do, for progress
// lines; empty for the story's burst, which says it itself.
func (c *Config) describeLoad(s Scenario) string {
	var what string
	switch {
	case c.Open != nil:
		what = fmt.Sprintf("%s requests/s for %v", strconv.FormatFloat(c.Open.Rate, 'g', -1, 64), c.Open.Duration)
	case !s.local():
		what = fmt.Sprintf("%d requests at once", s.Concurrency)
	default:
		return ""
	}
	if s.local() {
		return what + ", " + plural(s.Workers, "worker")
	}
	return what + " to " + c.Target
}

// server is what a scenario loads: a `demo serve` started for it, or the
// --target.
type server struct {
	ep    endpoint
	name  string           // for messages: "demo serve" or the target's URL
	child *childproc.Child // nil for a --target
	tap   *logTap          // nil for a --target
}

// startServe starts `demo serve` for s and waits until it is ready.
func startServe(ctx context.Context, bin, extURL string, s Scenario, st Settings) (*server, error) {
	args := []string{"serve", "--port", "0", "--workers", strconv.Itoa(s.Workers)}
	switch {
	case st.App != nil:
		args = append(args, "--app", st.App.File)
	case s.Mode != "":
		args = append(args, "--mode", string(s.Mode))
	}
	if st.App == nil {
		args = append(args, "--calls", strconv.Itoa(st.Calls))
	}
	args = append(args,
		"--external", extURL,
		"--threadpool-size", strconv.Itoa(st.ThreadpoolSize),
		"--timeout-graceful-shutdown", serveGrace.String(),
		"--log-format", "json",
		"--no-access-log")
	tap := newLogTap()
	child, err := startServer(bin, tap, args...)
	if err != nil {
		return nil, err
	}
	running, err := waitEvent(ctx, child, contract.EventRunning, readyTimeout+time.Duration(s.Workers)*perWorkerStart)
	if err == nil {
		var ep endpoint
		if ep, err = parseEndpoint(running.URL); err == nil {
			return &server{ep: ep, name: "demo serve", child: child, tap: tap}, nil
		}
	}
	if refused := refusedInput(child); refused != "" && st.App != nil {
		_ = stopChild(child, stopGrace) // it has exited: this only waits for its output
		return nil, &BadAppError{refused}
	}
	return nil, errors.Join(err, stopChild(child, stopGrace))
}

// BadAppError says that `demo serve` refused the --app file (it may have
// changed since it was checked): the run stops before any load, and the
// command treats it like a bad flag. Its text is serve's one line,
// FILE:LINE:COL: what is wrong.
type BadAppError struct{ msg string }

func (e *BadAppError) Error() string { return e.msg }

// refusedInput returns the last line of a child that exited with status 2,
// demo's usage error, without its "demo: " prefix; "" for anything else.
func refusedInput(c *childproc.Child) string {
	select {
	case <-c.Exited():
	default:
		return ""
	}
	var exit *exec.ExitError
	lines := c.Lines()
	if !errors.As(c.ExitErr(), &exit) || exit.ExitCode() != 2 || len(lines) == 0 {
		return ""
	}
	return strings.TrimPrefix(lines[len(lines)-1].Text, "demo: ")
}

// stop stops a server we started and reads what its log says about res;
// a --target is left alone.
func (srv *server) stop(res *Result, t0 time.Time) error {
	if srv.child == nil {
		return nil
	}
	// Stop serve first: once it and its workers have exited, every line
	// they logged (the stall reports come after the responses) is in.
	if err := stopChild(srv.child, stopGrace); err != nil {
		return err
	}
	if res != nil {
		srv.tap.log().apply(res, t0)
	}
	return nil
}

// runScenario loads one server with one scenario's load.
func runScenario(ctx context.Context, serverFor func(context.Context, Scenario) (*server, error), s Scenario, st Settings) (res Result, err error) {
	srv, err := serverFor(ctx, s)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if stopErr := srv.stop(nil, time.Time{}); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	var t0 time.Time
	if st.Open != nil {
		t0, res, err = runOpen(ctx, srv, s, st)
	} else {
		t0, res, err = runBurst(ctx, srv, s, st)
	}
	if err != nil {
		return Result{}, err
	}
	if err := srv.stop(&res, t0); err != nil {
		return Result{}, err
	}
	if st.Open == nil && res.Failed() == len(res.Requests) {
		q := res.Requests[0]
		return res, errors.New("every request failed: " + requestFailure(q))
	}
	return res, nil
}

// burstBaselineProbes is how many health probes, one after the other, a
// --target burst sends first to learn how fast the idle server answers.
const burstBaselineProbes = 5

// runBurst fires the scenario's burst; against a --target it measures the
// baseline first.
func runBurst(ctx context.Context, srv *server, s Scenario, st Settings) (time.Time, Result, error) {
	res := Result{Scenario: s}
	timeout := st.requestTimeout(s)
	if !s.local() {
		res.Baseline = baseline(ctx, srv.ep, st, burstBaselineProbes, timeout)
		if down := allRefused(res.Baseline); down && ctx.Err() == nil {
			return time.Time{}, Result{}, &downError{target: srv.name, when: "before the burst to " + s.Path, cause: "health checks could not connect (" + res.Baseline[0].Err + ")"}
		}
	}
	t0, reqs, probes, err := burst(ctx, srv.ep, s.Path, s.Concurrency, st, timeout)
	if err != nil {
		return t0, Result{}, err
	}
	res.Requests, res.Probes = reqs, probes
	for _, q := range reqs {
		res.Wall = max(res.Wall, q.Finished)
	}
	if !s.local() && allRefused(probes) && allRefused(requestsAsProbes(reqs)) {
		return t0, Result{}, &downError{target: srv.name, when: "during the burst to " + s.Path, cause: "requests and health checks could not connect (" + probes[0].Err + ")"}
	}
	return t0, res, nil
}

// runOpen sends the open-loop arrivals while probing health like a load
// balancer and like a Kubernetes liveness probe. It stops early, with a
// downError, when the server stops answering.
func runOpen(parent context.Context, srv *server, s Scenario, st Settings) (time.Time, Result, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	t0 := time.Now()
	watch := newDownWatch(func(first Probe, lastAnswer time.Duration) {
		e := &downError{target: srv.name, cause: "every health check since could not connect (" + first.Err + ")",
			when: fmt.Sprintf("%s into the run", fmtWords(first.Sent))}
		if lastAnswer >= 0 {
			e.lastAnswer = fmt.Sprintf("the last one answered was sent at %s", fmtWords(lastAnswer))
		}
		cancel(e)
	})
	if srv.child != nil {
		// A server we started must live through the run.
		watching := make(chan struct{})
		defer func() {
			cancel(nil)
			<-watching
		}()
		go func() {
			defer close(watching)
			select {
			case <-srv.child.Exited():
				err := errors.New("demo serve exited during the run")
				if exitErr := srv.child.ExitErr(); exitErr != nil {
					err = fmt.Errorf("demo serve exited during the run: %w", exitErr)
				}
				cancel(err)
			case <-ctx.Done():
			}
		}()
	}
	timeout := st.requestTimeout(s)
	g := generator{ep: srv.ep, paths: st.Open.Mix.Paths(), timeout: timeout, limit: maxInFlight()}
	hp := startProber(ctx, srv.ep, st.healthPath(), st.ProbeInterval, min(timeout, OpenProbeTimeout), t0, watch.see)
	lv := startLiveness(ctx, srv.ep, st.healthPath(), t0)
	reqs, peak := g.run(ctx, st.Open.Schedule(), t0)
	res := Result{Scenario: s, Requests: reqs, PeakInFlight: peak}
	res.Probes = hp.Stop()
	res.Liveness = lv.Stop()
	if err := parent.Err(); err != nil {
		return t0, Result{}, err
	}
	if err := context.Cause(ctx); err != nil {
		return t0, Result{}, err
	}
	for _, q := range reqs {
		res.Wall = max(res.Wall, q.Finished)
	}
	return t0, res, nil
}

// downError says that the server stopped answering mid-run.
type downError struct {
	target     string
	when       string
	cause      string
	lastAnswer string
}

func (e *downError) Error() string {
	s := fmt.Sprintf("%s stopped answering %s: %s", e.target, e.when, e.cause)
	if e.lastAnswer != "" {
		s += "; " + e.lastAnswer
	}
	return s
}

// allRefused reports whether there were probes and every one was refused
// (or could not connect at all).
func allRefused(ps []Probe) bool {
	for _, p := range ps {
		if p.Cause != CauseRefused && p.Cause != CauseConnect {
			return false
		}
	}
	return len(ps) > 0
}

func requestsAsProbes(reqs []Request) []Probe {
	out := make([]Probe, len(reqs))
	for i, q := range reqs {
		out[i] = Probe{Cause: q.Cause, Err: q.Err, Status: q.Status}
	}
	return out
}
