package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"demo/contract"
)

// The end-to-end tests run the real binary: built once here, then started
// as `demo external` and `demo serve` processes on 127.0.0.1:0.
var demoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "demo-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	demoBin = filepath.Join(dir, "demo")
	build := exec.Command("go", "build", "-o", demoBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build demo:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running demo process whose stderr lines the test can wait for.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and its output is read
	err  error         // cmd.Wait's result, valid after done

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced whenever a line arrives
}

// startDemo starts `demo args...`; the process is killed when the test ends.
func startDemo(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(demoBin, args...))
}

// startCmd starts a prepared command (one that needs ExtraFiles, Env or a
// shell in front) like startDemo does.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	args := cmd.Args[1:]
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, done: make(chan struct{}), grew: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of demo %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits until a line matching re appears (at or after line index
// from) and returns its index and submatches.
func (p *proc) waitLine(re *regexp.Regexp, from int, timeout time.Duration) (int, []string) {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if m := re.FindStringSubmatch(p.lines[i]); m != nil {
				p.mu.Unlock()
				return i, m
			}
		}
		grew := p.grew
		p.mu.Unlock()
		select {
		case <-grew:
		case <-p.done:
			p.t.Fatalf("process exited (%v) before a line matching %q", p.err, re)
		case <-deadline:
			p.t.Fatalf("no line matching %q within %v", re, timeout)
		}
	}
}

// snapshotLines returns the lines read so far.
func (p *proc) snapshotLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// countBefore reports how many lines before index end match re.
func (p *proc) countBefore(re *regexp.Regexp, end int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines[:end] {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("process still running after %v", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
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
	p := startDemo(t, append([]string{"serve", "--port", "0"}, args...)...)
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	return p, m[1]
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
func get(url string) result {
	start := time.Now()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Get(url)
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

// childPids lists the children of pid, read from /proc. Each thread lists
// the children it forked, and the master forks from a thread of its own.
func childPids(t *testing.T, pid int) []int {
	t.Helper()
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range files {
		raw, _ := os.ReadFile(f) // a thread may exit meanwhile
		for _, field := range strings.Fields(string(raw)) {
			n, _ := strconv.Atoi(field)
			pids = append(pids, n)
		}
	}
	return pids
}

// alive reports whether pid still exists and is not a zombie.
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone polls until none of pids is alive, or fails after timeout.
func waitGone(t *testing.T, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive after %v", pid, timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
