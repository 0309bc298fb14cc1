package e2e

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
)

// targetJSON is the part of a --target burst's --json the tests read.
type targetJSON struct {
	Scenarios []struct {
		Name       string `json:"name"`
		Path       string `json:"path"`
		Verdict    string `json:"verdict"`
		BlocksLoop *bool  `json:"blocks_loop"`
		Summary    string `json:"summary"`
		Requests   []struct {
			Started *float64 `json:"started_s"`
			Status  int      `json:"status"`
		} `json:"requests"`
		HealthChecks []struct {
			Kind string `json:"kind"`
		} `json:"health_checks"`
	} `json:"scenarios"`
}

// verdicts runs `demo experiment --target url --paths paths` and returns
// the scenarios of its --json, failing unless it exited 0.
func verdicts(t *testing.T, url, paths string, extra ...string) targetJSON {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "target.json")
	args := append([]string{"--target", url, "--paths", paths, "--json", jsonPath}, extra...)
	r := startExperiment(t, args...)
	if code := r.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("experiment exited %d", code)
	}
	t.Logf("stdout:\n%s", r.stdout)
	// It started nothing, so nothing of its own is left.
	if left := markedPids(r.marker); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	var doc targetJSON
	readJSON(t, jsonPath, &doc)
	for _, s := range doc.Scenarios {
		for _, q := range s.Requests {
			if q.Started != nil {
				t.Errorf("%s: a start time for a request to a --target, whose log is not ours", s.Path)
			}
		}
		kinds := map[string]int{}
		for _, h := range s.HealthChecks {
			kinds[h.Kind]++
		}
		if kinds["baseline"] == 0 || kinds["health"] == 0 {
			t.Errorf("%s: health checks by kind %v, want a baseline and probes during the burst", s.Path, kinds)
		}
	}
	return doc
}

// wantVerdict checks the verdict on path: blocks is nil for inconclusive.
func wantVerdict(t *testing.T, doc targetJSON, path string, blocks bool, words string) {
	t.Helper()
	for _, s := range doc.Scenarios {
		if s.Path != path {
			continue
		}
		if s.BlocksLoop == nil || *s.BlocksLoop != blocks {
			t.Errorf("%s: blocks_loop %v (%s), want %v", path, s.BlocksLoop, s.Summary, blocks)
		}
		if !strings.Contains(s.Summary, words) {
			t.Errorf("%s: evidence %q lacks %q", path, s.Summary, words)
		}
		return
	}
	t.Errorf("no scenario for %s in %+v", path, doc.Scenarios)
}

func TestExperimentTargetJudgesDemoServe(t *testing.T) {
	ext := startExternal(t, 300*time.Millisecond)
	_, url := startServe(t, "--workers", "1", "--external", ext)
	doc := verdicts(t, url, "/mixed,/all-async")
	wantVerdict(t, doc, "/mixed", true, "requests to /mixed were in flight; they finished at ")
	wantVerdict(t, doc, "/mixed", true, "one after the other")
	wantVerdict(t, doc, "/all-async", false, "together")
}

// With two workers on one shared socket, one worker accepts both requests
// and serialises them while the other answers the health checks: the
// evidence disagrees, and the verdict must say so rather than guess.
func TestExperimentTargetIsHonestAboutSeveralWorkers(t *testing.T) {
	ext := startExternal(t, 300*time.Millisecond)
	_, url := startServe(t, "--workers", "2", "--external", ext)
	doc := verdicts(t, url, "/mixed,/all-async")
	for _, s := range doc.Scenarios {
		switch {
		case s.Path == "/all-async":
			wantVerdict(t, doc, "/all-async", false, "together")
		case s.BlocksLoop != nil && !*s.BlocksLoop:
			// A blocking route must never be cleared; "blocks" is right
			// when both workers happened to block, "inconclusive" when
			// the idle one answered the health checks.
			t.Errorf("/mixed on 2 workers judged %q: %s", s.Verdict, s.Summary)
		case s.BlocksLoop == nil && !strings.Contains(s.Summary, "inconclusive: "):
			t.Errorf("/mixed: null verdict without saying inconclusive: %s", s.Summary)
		}
	}
}

func TestExperimentTargetUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	cmd := exec.Command(demoBin, "experiment", "--target", url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("%v, want exit code 2", err)
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "demo: --target "+url+": cannot connect: connection refused" {
		t.Errorf("stderr %q", msg)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to find nothing listening", took)
	}
}

func TestExperimentTargetThatStopsAnswering(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 100*time.Millisecond)
	srv, url := startServe(t, "--workers", "1", "--external", ext)
	workers := childPids(t, srv.pid())
	r := startExperiment(t, "--target", url, "--rate", "20", "--duration", "30s", "--mix", "/all-async")
	// Once the run's health checks were answered (the server's access log
	// says so: the check before the run, then at its start a probe and a
	// liveness probe, then the next probe) and requests are in flight, the
	// server dies.
	probed := regexp.MustCompile(`"GET /healthcheck HTTP/1\.1" 200`)
	at := -1
	for range 4 {
		at, _ = srv.waitLine(probed, at+1, 15*time.Second)
	}
	r.waitSockets(t, 2)
	srv.signal(syscall.SIGKILL)
	waitGone(t, workers, 5*time.Second) // they die with their master
	begin := time.Now()
	if code := r.wait(t, 15*time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	t.Logf("exited %v after the server died", time.Since(begin))
	// A probe already in the accept queue when the last process holding
	// the socket dies is reset rather than refused.
	msg := strings.TrimSpace(r.stderr.String())
	last := lastLine(msg)
	if !regexp.MustCompile(`^demo: experiment: http://127\.0\.0\.1:\d+ stopped answering [\d.]+ m?s into the run: every health check since could not connect \(.*(connection refused|connection reset by peer)\); the last one answered was sent at [\d.]+ m?s$`).MatchString(last) {
		t.Errorf("last line %q: want what happened", last)
	}
	if r.stdout.Len() > 0 {
		t.Errorf("results from a run cut short: %q", r.stdout)
	}
}

// pythonWith returns a python3 that can import every module, trying the
// one on PATH first, then Debian's; "" if none can.
func pythonWith(modules ...string) string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import "+strings.Join(modules, ", ")).Run() == nil {
			return py
		}
	}
	return ""
}

// The same experiment against real Uvicorn running the FastAPI module that
// `demo app fastapi` prints for the built-in app: a blocking route must be
// judged blocking, an awaited one not.
func TestExperimentTargetJudgesRealUvicorn(t *testing.T) {
	dir := t.TempDir()
	example, err := exec.Command(demoBin, "app", "example").Output()
	if err != nil {
		t.Skipf("`demo app example` is not available in this build (%v): the FastAPI module comes from `demo app fastapi`", err)
	}
	appFile := filepath.Join(dir, "app.toml")
	if err := os.WriteFile(appFile, example, 0o644); err != nil {
		t.Fatal(err)
	}
	module, err := exec.Command(demoBin, "app", "fastapi", appFile).Output()
	if err != nil {
		t.Skipf("`demo app fastapi` is not available in this build (%v)", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "demoapp.py"), module, 0o644); err != nil {
		t.Fatal(err)
	}
	py := pythonWith("uvicorn", "fastapi", "httpx", "requests")
	if py == "" {
		t.Skip("no python3 here can import uvicorn, fastapi, httpx and requests (Debian: apt-get install python3-uvicorn python3-fastapi python3-httpx python3-requests)")
	}

	ext := startExternal(t, 500*time.Millisecond)
	// Uvicorn serves a socket we bind, passed as fd 3: no fixed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	ln.Close() // the duplicate in lnFile keeps the socket open
	if err != nil {
		t.Fatal(err)
	}
	uv := startSpec(t, childproc.Spec{Path: py, Args: []string{"-m", "uvicorn", "demoapp:app", "--fd", "3", "--workers", "1"}, Dir: dir, Env: []string{"EXTERNAL_API=" + ext}, ExtraFiles: []*os.File{lnFile}})
	lnFile.Close()
	uv.waitLine(regexp.MustCompile(`Application startup complete|Uvicorn running`), 0, 30*time.Second)

	// Python is slower than demo and this machine is shared: health checks
	// count as late after 500 ms here, and a blocking request holds the
	// loop for 1 s, so neither side comes near the line.
	doc := verdicts(t, "http://"+ln.Addr().String(), "/mixed,/all-async", "--probe-interval", "250ms")
	wantVerdict(t, doc, "/mixed", true, "one after the other")
	wantVerdict(t, doc, "/all-async", false, "together")
}
