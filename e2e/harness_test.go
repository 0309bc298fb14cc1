package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
	"demo/contract"
	"demo/control"
)

// demoBin is the binary under test, built once by TestMain.
var demoBin string

// exitUsage is demo's exit code for bad flags or arguments (the README's).
const exitUsage = 2

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "demo-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	demoBin = filepath.Join(dir, "demo")
	build := exec.Command("go", "build", "-o", demoBin, "demo")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build demo:", err)
		return 1
	}
	return m.Run()
}

// proc is a running demo process, started and read by package childproc
// (its stdout and stderr, one line at a time), that the test waits on.
type proc struct {
	t *testing.T
	c *childproc.Child
}

// startDemo starts `demo args...`; it is stopped when the test ends.
func startDemo(t *testing.T, args ...string) *proc {
	t.Helper()
	return startSpec(t, childproc.Spec{Args: args})
}

// startSpec starts a prepared child: inherited files, environment, or a
// shell in front (Path; demoBin when empty), like startDemo.
func startSpec(t *testing.T, s childproc.Spec) *proc {
	t.Helper()
	if s.Path == "" {
		s.Path = demoBin
	}
	if s.Name == "" {
		s.Name = strings.Join(append([]string{filepath.Base(s.Path)}, s.Args...), " ")
	}
	c, err := childproc.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, c: c}
	t.Cleanup(func() {
		// No grace: whatever the test left running is killed at once, and
		// its workers with it (Pdeathsig).
		_ = c.Stop(0)
		if t.Failed() {
			t.Logf("output of %s:\n%s", s.Name, p.output())
		}
	})
	return p
}

func (p *proc) pid() int { return p.c.PID() }

// lines returns the lines read so far.
func (p *proc) lines() []string {
	var out []string
	for _, l := range p.c.Lines() {
		out = append(out, l.Text)
	}
	return out
}

func (p *proc) output() string { return strings.Join(p.lines(), "\n") }

// waitLine waits until a line matching re appears (at or after line index
// from) and returns its index and submatches.
func (p *proc) waitLine(re *regexp.Regexp, from int, timeout time.Duration) (int, []string) {
	p.t.Helper()
	m, err := p.c.WaitLine(context.Background(), re, from, timeout)
	if err != nil {
		p.t.Fatal(err)
	}
	return m.Index, m.Groups
}

// countBefore reports how many lines before index end match re.
func (p *proc) countBefore(re *regexp.Regexp, end int) int {
	n := 0
	for _, l := range p.lines()[:end] {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// wait waits for the process to exit and for the end of its output, and
// returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.c.Exited():
	case <-time.After(timeout):
		p.t.Fatalf("%s still running after %v", p.c.Name(), timeout)
	}
	_ = p.c.Stop(0) // it exited: this only reads its output to the end
	return p.c.ExitCode()
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.c.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

var (
	externalRunning = contract.RunningLine(contract.ExternalName)
	serveRunning    = contract.RunningLine(contract.ServeName)
	startedLine     = contract.StartedLine("")
)

// startExternal runs the slow external API and returns its URL.
func startExternal(t *testing.T, delay time.Duration) string {
	t.Helper()
	p := startDemo(t, "external", "--port", "0", "--delay", delay.String())
	_, m := p.waitLine(externalRunning, 0, 10*time.Second)
	return m[1]
}

// startServe runs `demo serve` on a free port and returns it with its URL,
// once every worker is ready.
func startServe(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	return startServeEnv(t, nil, args...)
}

// startServeEnv is startServe with extra environment variables.
func startServeEnv(t *testing.T, env []string, args ...string) (*proc, string) {
	t.Helper()
	p := startSpec(t, childproc.Spec{Args: append([]string{"serve", "--port", "0"}, args...), Env: env})
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	return p, m[1]
}

// runDemo runs `demo args...` to completion (or kills it after timeout) and
// returns its stdout, stderr and exit code.
func runDemo(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, demoBin, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("demo %s still running after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, out.String(), errOut.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// result is one finished HTTP request, timed from when it was sent.
type result struct {
	status  int
	body    map[string]any
	header  http.Header
	elapsed time.Duration
	err     error
}

// get sends one request on a fresh connection, as httpie does.
func get(url string) result { return getWith(context.Background(), url) }

// getWith is get with a context (a trace, say).
func getWith(ctx context.Context, url string) result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return result{err: err}
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, elapsed: time.Since(start), err: err}
	if err == nil && len(raw) > 0 {
		r.err = json.Unmarshal(raw, &r.body)
	}
	return r
}

// getAsync starts get in the background; the returned channel yields its result.
func getAsync(url string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- get(url) }()
	return ch
}

// waitHealthy polls /healthcheck until it answers 200, or fails.
func waitHealthy(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := get(url + "/healthcheck")
		if r.err == nil && r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthcheck did not answer 200 within %v: %d %v", timeout, r.status, r.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childPids lists the children of pid.
func childPids(t *testing.T, pid int) []int {
	t.Helper()
	kids, err := childproc.Children(pid)
	if err != nil {
		t.Fatal(err)
	}
	return kids
}

// onlyChild is the one worker of a serve.
func onlyChild(t *testing.T, p *proc) int {
	t.Helper()
	kids := childPids(t, p.pid())
	if len(kids) != 1 {
		t.Fatalf("master has children %v, want exactly one", kids)
	}
	return kids[0]
}

// waitChildren polls the master's children until ok accepts them, or fails.
func waitChildren(t *testing.T, master int, timeout time.Duration, ok func([]int) bool) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		kids := childPids(t, master)
		if ok(kids) {
			return kids
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of %d after %v: %v", master, timeout, kids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// workerArgv reads a process's argv from /proc.
func workerArgv(t *testing.T, pid int) []string {
	t.Helper()
	argv, err := childproc.Argv(pid)
	if err != nil {
		t.Fatal(err)
	}
	return argv
}

// waitGone waits until none of pids is alive, or fails after timeout.
func waitGone(t *testing.T, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for childproc.Alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive after %v", pid, timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// demoStatus runs `demo status --json` for the master that where names
// (--port P, or --control PATH) and returns its snapshot.
func demoStatus(t *testing.T, where ...string) control.Snapshot {
	t.Helper()
	out, err := exec.Command(demoBin, append([]string{"status", "--json"}, where...)...).Output()
	if err != nil {
		t.Fatalf("demo status: %v", err)
	}
	var snap control.Snapshot
	if err := json.Unmarshal(out, &snap); err != nil {
		t.Fatalf("demo status --json: %v\n%s", err, out)
	}
	return snap
}

// waitStatus polls demo status until some worker's row satisfies ok, and
// fails the test after timeout. The master has no event to wait for: a
// worker's figures change with its heartbeats.
func waitStatus(t *testing.T, timeout time.Duration, ok func(control.Worker) bool, where ...string) control.Snapshot {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		snap := demoStatus(t, where...)
		if slices.ContainsFunc(snap.Workers, ok) {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, no worker as awaited: %+v", timeout, snap.Workers)
		}
		time.Sleep(100 * time.Millisecond) // the heartbeat is 500 ms
	}
}

// stalled: the master calls the worker's loop stalled.
func stalled(w control.Worker) bool { return w.StalledFor > 0 }
