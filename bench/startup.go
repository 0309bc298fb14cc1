package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"demo/childproc"
	"demo/contract"
)

// startupResult holds, per round, how long demo took to get ready.
type startupResult struct {
	ready       []time.Duration // spawn of `serve --workers 4` → its `running on` line
	replaced    []time.Duration // SIGKILL of the only worker → a fresh connection answered
	startedLine []time.Duration // SIGKILL → the master's `Started server process` line
	readyLine   []time.Duration // SIGKILL → the new worker's ready line
}

const startupWorkers = 4

// The lines timed after a kill: the master's for the replacement's spawn,
// the replacement's own once it serves.
var (
	startedProcess = contract.WorkerStartedLine("1/1")
	workerReady    = contract.WorkerReadyLine(1, 1)
)

// runStartup measures, cfg.Rounds times: how long `demo serve --workers 4`
// takes from spawn until the master announces every worker ready; and how
// long a SIGKILLed worker (of `--workers 1`, so that only the replacement
// can answer) takes to be replaced and answer a request on a fresh
// connection, which waits in the listen backlog meanwhile.
func (r *runner) runStartup(ctx context.Context) error {
	res := &startupResult{}
	for round := 1; round <= r.cfg.Rounds; round++ {
		d, err := r.timeReady(ctx)
		if err != nil {
			return fmt.Errorf("start-up: %w", err)
		}
		res.ready = append(res.ready, d)
		if err := r.timeReplacement(ctx, res); err != nil {
			return fmt.Errorf("worker replacement: %w", err)
		}
		r.log("start-up round %d: ready in %v, worker replaced and answering in %v", round,
			d.Round(time.Millisecond), res.replaced[len(res.replaced)-1].Round(time.Millisecond))
	}
	r.startup = res
	return nil
}

func (r *runner) timeReady(ctx context.Context) (time.Duration, error) {
	spawned := time.Now()
	p, m, err := startReady(ctx, childproc.Spec{Name: "demo serve --workers 4", Path: r.cfg.Bin,
		Args: []string{"serve", "--port", "0", "--control", r.controlPath(), "--workers", fmt.Sprint(startupWorkers), "--no-access-log"}}, serveRunning)
	if err != nil {
		return 0, err
	}
	return m.Line.At.Sub(spawned), p.Stop(10 * time.Second)
}

func (r *runner) timeReplacement(ctx context.Context, res *startupResult) (err error) {
	// Read line by line (childproc): the log lines' arrival times are
	// measured, and nothing loads this server.
	const name = "demo serve --workers 1"
	p, m, err := startReady(ctx, childproc.Spec{Name: name, Path: r.cfg.Bin,
		Args: []string{"serve", "--port", "0", "--control", r.controlPath(), "--workers", "1", "--no-access-log"}}, serveRunning)
	if err != nil {
		return err
	}
	s, err := newServer(name, "demo", p, m.Groups[1], true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.stop()) }()
	workers := s.workers()
	if len(workers) != 1 {
		return fmt.Errorf("want one worker, found %v", workers)
	}
	// A pidfd names this very process: no pid-reuse race between looking
	// it up, killing it and seeing it gone.
	pidfd, err := unix.PidfdOpen(workers[0], 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	from := p.Count()
	killed := time.Now()
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("kill worker: %w", err)
	}
	// The pidfd turns readable once the process has exited: from then on
	// only a replacement can accept.
	if err := waitReadable(pidfd, 5*time.Second); err != nil {
		return fmt.Errorf("worker %d did not die: %w", workers[0], err)
	}
	if err := getOK(ctx, s.url+"/healthcheck", 10*time.Second); err != nil {
		return fmt.Errorf("after the kill: %w", err)
	}
	res.replaced = append(res.replaced, time.Since(killed))
	m, err = p.WaitLine(ctx, startedProcess, from, 5*time.Second)
	if err != nil {
		return err
	}
	res.startedLine = append(res.startedLine, m.Line.At.Sub(killed))
	m, err = p.WaitLine(ctx, workerReady, from, 5*time.Second)
	if err != nil {
		return err
	}
	res.readyLine = append(res.readyLine, m.Line.At.Sub(killed))
	return nil
}

func waitReadable(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.New("timed out")
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("poll: %w", err)
		case n > 0:
			return nil
		}
	}
}

// getOK sends one GET on a fresh connection and wants 200.
func getOK(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// median of ds (0 for none).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
