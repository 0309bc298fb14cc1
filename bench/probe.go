package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"demo/childproc"
)

// ProbeResult is what Probe measured; `demo bench probe` prints it as one
// JSON line.
type ProbeResult struct {
	Probes   int           `json:"probes"` // sent, failed ones included
	Failed   int           `json:"failed"`
	FirstErr string        `json:"first_error,omitempty"`
	P50      time.Duration `json:"p50_ns"` // of the probes answered 200
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	Over100  int           `json:"over_100ms"` // answered, but in 100 ms or more
	CPU      time.Duration `json:"cpu_ns"`     // the probing process's own CPU time
}

// ProbeTimeout bounds one probe: a slower answer counts as a failure.
const ProbeTimeout = 5 * time.Second

// Probe sends GET on a fresh connection to url (http://127.0.0.1:PORT/...)
// every interval, like a load balancer's health check, until ctx ends; it
// then waits for the probes still in flight (each at most timeout) and
// returns what they measured. Each probe has a goroutine of its own, so a
// slow answer does not delay the next probe. started, when not nil, is
// called once the arguments are checked, before the first probe.
func Probe(ctx context.Context, url string, interval, timeout time.Duration, started func()) (ProbeResult, error) {
	u, err := checkTarget(url)
	if err != nil {
		return ProbeResult{}, err
	}
	if interval <= 0 || timeout <= 0 {
		return ProbeResult{}, errors.New("probe: interval and timeout must be positive")
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: demo-bench-probe\r\nConnection: close\r\n\r\n")
	if started != nil {
		started()
	}
	cpu0 := selfCPU()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		hist histogram
		res  ProbeResult
	)
	probe := func() {
		defer wg.Done()
		start := time.Now()
		status, err := func() (int, error) {
			conn, err := net.DialTimeout("tcp", u.Host, timeout)
			if err != nil {
				return 0, fmt.Errorf("connect: %w", err)
			}
			defer conn.Close()
			return roundTripOnce(conn, req, start.Add(timeout))
		}()
		took := time.Since(start)
		if err == nil && status != 200 {
			err = fmt.Errorf("status %d", status)
		}
		mu.Lock()
		defer mu.Unlock()
		res.Probes++
		if err != nil {
			res.Failed++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			return
		}
		hist.record(took)
		if took >= 100*time.Millisecond {
			res.Over100++
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for probing := true; probing; {
		wg.Add(1)
		go probe()
		select {
		case <-tick.C:
		case <-ctx.Done():
			probing = false
		}
	}
	wg.Wait()
	res.P50, res.P99, res.Max = hist.quantile(0.5), hist.quantile(0.99), hist.max
	res.CPU = selfCPU() - cpu0
	return res, nil
}

// probeProcess is `demo bench probe` running as a child: its goroutines
// are scheduled apart from the bench's, which during the capacity burst
// has thousands of its own. Probes from inside the bench queued behind
// those and measured the bench's scheduler, not the worker
// (docs/performance.md, optimisation 9).
type probeProcess struct {
	c *childproc.Child
}

var (
	probing     = regexp.MustCompile(`^demo bench probe: probing `)
	probeResult = regexp.MustCompile(`^\{.*\}$`)
)

// startProbeProcess starts `bin bench probe` against url with GOMAXPROCS=1
// and waits until it probes.
func startProbeProcess(ctx context.Context, bin, url string, interval time.Duration) (*probeProcess, error) {
	c, _, err := startReady(ctx, childproc.Spec{
		Name: "demo bench probe",
		Path: bin,
		Args: []string{"bench", "probe", "--url", url, "--interval", interval.String(), "--timeout", ProbeTimeout.String()},
		Env:  []string{"GOMAXPROCS=1"},
	}, probing)
	if err != nil {
		return nil, err
	}
	return &probeProcess{c: c}, nil
}

// stop tells the probe process to stop (SIGTERM), waits for it and reads
// its result line.
func (p *probeProcess) stop() (ProbeResult, error) {
	if err := p.c.Stop(ProbeTimeout + 5*time.Second); err != nil {
		return ProbeResult{}, err
	}
	if err := p.c.ExitErr(); err != nil {
		return ProbeResult{}, err
	}
	lines := p.c.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if raw := strings.TrimSpace(lines[i].Raw); probeResult.MatchString(raw) {
			var res ProbeResult
			if err := json.Unmarshal([]byte(raw), &res); err != nil {
				return ProbeResult{}, fmt.Errorf("probe result %q: %w", raw, err)
			}
			return res, nil
		}
	}
	return ProbeResult{}, errors.New("demo bench probe printed no result")
}
