package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
)

// experimentRun is a running `demo experiment`. Its children inherit a
// marker in their environment (not named DEMO_…: the tools' children get
// no such variable, see contract.WithoutConfigEnv), so the test can find
// every process it started — even one that escaped to init — by reading
// /proc.
type experimentRun struct {
	cmd    *exec.Cmd
	marker string
	stdout *bytes.Buffer
	stderr *bytes.Buffer
	done   chan struct{}
}

func startExperiment(t *testing.T, args ...string) *experimentRun {
	t.Helper()
	r := &experimentRun{
		marker: fmt.Sprintf("E2E_EXPERIMENT_MARKER=%s-%d", t.Name(), time.Now().UnixNano()),
		stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{},
		done: make(chan struct{}),
	}
	r.cmd = exec.Command(demoBin, append([]string{"experiment"}, args...)...)
	r.cmd.Env = append(os.Environ(), r.marker)
	r.cmd.Stderr = r.stderr
	r.cmd.Stdout = r.stdout // a pipe: not a terminal, so no colour
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		_ = r.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		// Whatever happened, leave no process behind for the next test.
		for _, pid := range markedPids(r.marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("experiment stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		}
	})
	return r
}

// wait waits for the experiment to exit and returns its exit code.
func (r *experimentRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("experiment still running after %v", timeout)
	}
	return r.cmd.ProcessState.ExitCode()
}

// markedPids lists the live processes whose environment holds marker.
func markedPids(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte(marker+"\x00")) && childproc.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// experimentJSON is the part of --json the test reads.
type experimentJSON struct {
	Scenarios []struct {
		Name       string  `json:"name"`
		Mode       string  `json:"mode"`
		Workers    int     `json:"workers"`
		Wall       float64 `json:"wall_s"`
		RequestMax float64 `json:"request_max_s"`
		HealthP50  float64 `json:"health_p50_s"`
		HealthMax  float64 `json:"health_max_s"`
		Stalled    float64 `json:"loops_stalled_s"`
		Predicted  float64 `json:"predicted_s"`
		Deviation  float64 `json:"deviation"`
		Summary    string  `json:"summary"`
		Warning    string  `json:"warning"`
	} `json:"scenarios"`
	Events []struct {
		Scenario string  `json:"scenario"`
		Kind     string  `json:"kind"`
		Route    string  `json:"route"`
		ID       string  `json:"id"`
		Index    int     `json:"index"`
		Worker   int     `json:"worker"`
		T        float64 `json:"t"`
		Latency  float64 `json:"latency"`
		Status   int     `json:"status"`
	} `json:"events"`
}

// latencies returns the scenario's request latencies, fastest first.
func (d experimentJSON) latencies(scenario string) []float64 {
	var out []float64
	for _, e := range d.Events {
		if e.Scenario == scenario && e.Kind == "finished" && e.Status == 200 {
			out = append(out, e.Latency)
		}
	}
	if len(out) == 2 && out[0] > out[1] {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

func TestExperimentShowsTheArticle(t *testing.T) {
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "report.html")
	start := time.Now()
	r := startExperiment(t, "--delay", "300ms", "--json", jsonPath, "--report", htmlPath)
	if code := r.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("experiment exited %d", code)
	}
	took := time.Since(start)
	t.Logf("experiment took %v; its output:\n%s", took, r.stdout)

	if left := markedPids(r.marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	out := r.stdout.String()
	if strings.Contains(out, "\x1b") {
		t.Error("escape sequences on a non-terminal stdout")
	}
	for _, want := range []string{"health max", "loops stalled", "Model check", "\nmixed×1 — ", "\nasync×1 — ", "\nmixed×2 — ", "\nthreadpool×1 — "} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	// Progress goes to stderr: `demo experiment > out.txt` keeps only the
	// results.
	if !strings.HasPrefix(out, "External API: ") || strings.Contains(out, "scenario 1/4") {
		t.Errorf("stdout does not start with the results, or has progress lines")
	}
	if errOut := r.stderr.String(); !strings.Contains(errOut, "scenario 1/4 mixed×1: running (2 requests, 1 worker)…") || !strings.Contains(errOut, "scenario 4/4 threadpool×1: done in ") {
		t.Errorf("stderr %q lacks the progress lines", errOut)
	}

	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc experimentJSON
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, s := range doc.Scenarios {
		byName[s.Name] = i
		t.Logf("%-13s wall %.3fs (model %.1fs, %+.0f%%)  request max %.3fs  health p50 %.3fs max %.3fs  stalled %.2fs  %s",
			s.Name, s.Wall, s.Predicted, s.Deviation*100, s.RequestMax, s.HealthP50, s.HealthMax, s.Stalled, s.Summary)
	}
	if len(doc.Scenarios) != 4 {
		t.Fatalf("%d scenarios in JSON, want 4", len(doc.Scenarios))
	}

	// mixed×1: the second request waits for the first, and so do the
	// health checks.
	if l := doc.latencies("mixed×1"); len(l) != 2 || l[1] < 1.8*l[0] {
		t.Errorf("mixed×1 latencies %v: want the second ≥ 1.8× the first", l)
	}
	if m := doc.Scenarios[byName["mixed×1"]]; m.HealthMax < 0.3 {
		t.Errorf("mixed×1 health max %.3fs, want ≥ 300ms: the loop was blocked", m.HealthMax)
	}
	// async×1: both overlap; health checks stay fast.
	if l := doc.latencies("async×1"); len(l) != 2 || l[1] > 1.5*l[0] {
		t.Errorf("async×1 latencies %v: want the second ≤ 1.5× the first", l)
	}
	if a := doc.Scenarios[byName["async×1"]]; a.HealthMax >= 0.15 {
		t.Errorf("async×1 health max %.3fs, want < 150ms", a.HealthMax)
	}
	if p := doc.Scenarios[byName["threadpool×1"]]; p.HealthMax >= 0.15 {
		t.Errorf("threadpool×1 health max %.3fs, want < 150ms", p.HealthMax)
	}
	// Who started what comes from the workers' logs.
	for _, e := range doc.Events {
		if e.Kind == "started" && (e.Worker < 1 || e.Worker > 2) {
			t.Errorf("started event without a worker: %+v", e)
		}
	}

	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(page, []byte(`<svg class="timeline"`)); n != 4 {
		t.Errorf("%d timelines in the report, want 4", n)
	}
	dec := xml.NewDecoder(bytes.NewReader(page))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report is not well-formed: %v", err)
		}
	}
	if bytes.Contains(page, []byte("<script")) {
		t.Error("report has a script")
	}
}

func TestExperimentInterruptedStopsEverything(t *testing.T) {
	t.Parallel()
	r := startExperiment(t, "--modes", "mixed", "--delay", "2s")
	// Interrupt with requests in flight: the experiment holds sockets only
	// while its burst runs, and the mixed worker is then blocked.
	r.waitSockets(t, 2)
	started := markedPids(r.marker)
	if len(started) < 3 {
		t.Fatalf("%d marked processes (%v), want external, serve and its worker", len(started), started)
	}
	r.interrupt(t, started)
	if msg := lastLine(r.stderr.String()); !strings.Contains(msg, "interrupted") || strings.Contains(msg, "scenario") {
		t.Errorf("stderr %q, want progress, then one line saying it was interrupted", r.stderr)
	}
}

// waitSockets waits until the experiment holds n sockets: its requests
// are in flight.
func (r *experimentRun) waitSockets(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for socketCount(r.cmd.Process.Pid) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the experiment never held %d sockets: no requests in flight", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// interrupt sends SIGINT, as Ctrl+C does: the experiment must exit 130
// and leave none of the processes it started (started, and any other it
// marked) behind.
func (r *experimentRun) interrupt(t *testing.T, started []int) {
	t.Helper()
	begin := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t, 10*time.Second); code != 130 {
		t.Errorf("exit code %d after SIGINT, want 130", code)
	}
	t.Logf("exited %v after SIGINT", time.Since(begin))
	waitGone(t, started, 5*time.Second)
	if left := markedPids(r.marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// socketCount counts the open sockets of pid.
func socketCount(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

func TestExperimentRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--modes", "mixed,sync"}, "--modes"},
		{[]string{"--workers", "0"}, "--workers"},
		{[]string{"--delay", "0s"}, "--delay"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--report", "/no/such/dir/r.html"}, "--report"},
		{[]string{"--calls", "x"}, "calls"},
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--rate", "x"}, "rate"},
		{[]string{"--rate", "10", "--duration", "0s"}, "--duration"},
		{[]string{"--rate", "10", "--mix", "/=1,all-async=9"}, "--mix"},
		{[]string{"--rate", "10", "--mix", "/=-1"}, "--mix"},
		{[]string{"--rate", "10", "--mix", "/nope=1"}, "--mix: /nope is not a GET route of the built-in app"},
		{[]string{"--rate", "10", "--slo", "p99>1s"}, "--slo"},
		{[]string{"--rate", "10", "--slo", "p99<soon"}, "--slo"},
		{[]string{"--slo", "p99<1s"}, "--slo"},
		{[]string{"--mix", "/=1"}, "--mix"},
		{[]string{"--rate", "10", "--concurrency", "3"}, "--concurrency"},
		{[]string{"--target", "ftp://127.0.0.1:1"}, "--target"},
		{[]string{"--target", "http://127.0.0.1:1", "--modes", "mixed"}, "--modes"},
		{[]string{"--target", "http://127.0.0.1:1", "--paths", "mixed"}, "--paths"},
		{[]string{"--paths", "/"}, "--paths"},
		{[]string{"--request-timeout", "-1s"}, "--request-timeout"},
	} {
		cmd := exec.Command(demoBin, append([]string{"experiment"}, tc.args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit code 2", tc.args, err)
		}
		msg := strings.TrimSpace(stderr.String())
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: stderr %q, want one line about %s", tc.args, msg, tc.want)
		}
	}
}
