package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"demo/contract"
)

// writeApp writes an app file into the test's temporary directory.
func writeApp(t *testing.T, name, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAppCommandsExitCodes(t *testing.T) {
	t.Parallel()
	good := writeApp(t, "good.toml", `
[routes."/report"]
def = "async"
steps = [{ call = "external" }, { cpu = "30ms" }, { sleep = "200ms", blocking = true }, { log = 3 }]
`)
	bad := writeApp(t, "bad.toml", "[routes.\"/x\"]\ndef = \"sync\"\nsteps = [{ call = \"external\" }]\n")
	example := filepath.Join(t.TempDir(), "example.toml")

	out, errOut, code := runDemo(t, 10*time.Second, "app", "example")
	if code != 0 || errOut != "" || !strings.Contains(out, `def = "async"                           # "async": `+"`async def`"+`, runs on the event loop`) {
		t.Fatalf("demo app example: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	if err := os.WriteFile(example, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args    []string
		code    int
		stdout  string // the whole of it, "" for none
		stderr  string // a regexp the one line must match, "" for none
		fastapi bool
	}{
		{args: []string{"app", "check", good}, stdout: good + ": OK, 1 route: GET /report (async def, 4 steps, holds the event loop)\n"},
		{args: []string{"app", "check", example}, stdout: example + ": OK, 4 routes: GET / (async def, 2 steps, holds the event loop), " +
			"GET /mixed (async def, 2 steps, holds the event loop), GET /all-async (async def, 2 steps), GET /threadpool (def, thread pool, 2 steps)\n"},
		{args: []string{"app", "check", bad}, code: 2, stderr: `^demo: ` + regexp.QuoteMeta(bad+`:3:10: 'await' outside async function: routes./x steps[1] (`)},
		{args: []string{"app", "check", bad + ".missing"}, code: 2, stderr: regexp.QuoteMeta(bad + ".missing: cannot read: no such file or directory")},
		{args: []string{"app", "check"}, code: 2, stderr: `demo app check takes FILE, got`},
		{args: []string{"app", "check", good, bad}, code: 2, stderr: `demo app check takes FILE, got`},
		{args: []string{"app", "example", "--mode", "fast"}, code: 2, stderr: `--mode "fast"`},
		{args: []string{"app", "fastapi", good}, fastapi: true},
		{args: []string{"app", "fastapi"}, fastapi: true},
		{args: []string{"app", "fastapi", bad}, code: 2, stderr: regexp.QuoteMeta(bad + `:3:10: 'await' outside async function`)},
		// serve validates the file before it binds or starts anything.
		{args: []string{"serve", "--port", "0", "--app", bad}, code: 2, stderr: `^demo: ` + regexp.QuoteMeta(bad+`:3:10: 'await' outside async function: routes./x steps[1]`)},
		{args: []string{"serve", "--port", "0", "--app", good, "--mode", "async"}, code: 2, stderr: `--mode is for the built-in app`},
		{args: []string{"serve", "--port", "0", "--app", good, "--calls", "3"}, code: 2, stderr: `--calls is for the built-in app`},
		{args: []string{"serve", "--port", "0", "--app", good, "--external", "localhost:1"}, code: 2, stderr: `--external "localhost:1"`},
	} {
		var name []string
		for _, a := range tc.args {
			name = append(name, filepath.Base(a))
		}
		t.Run(strings.Join(name, " "), func(t *testing.T) {
			out, errOut, code := runDemo(t, 10*time.Second, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			switch {
			case tc.fastapi:
				if !strings.Contains(out, "app = FastAPI()") || !strings.Contains(out, "@app.api_route(") {
					t.Errorf("not a FastAPI module:\n%s", out)
				}
			case out != tc.stdout:
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			switch {
			case tc.stderr == "" && errOut != "":
				t.Errorf("stderr %q, want none", errOut)
			case tc.stderr != "" && (len(lines) != 1 || !regexp.MustCompile(tc.stderr).MatchString(lines[0])):
				t.Errorf("stderr %q: want one line matching %q", errOut, tc.stderr)
			}
		})
	}
}

// probeDuring probes /healthcheck every 50 ms on fresh connections, as a
// load balancer does, until the request r is answered; it returns that
// answer and the slowest probe.
func probeDuring(t *testing.T, base string, r <-chan result) (result, time.Duration) {
	t.Helper()
	var res result
	done := make(chan struct{})
	go func() {
		res = <-r
		close(done)
	}()
	slowest := probeUntil(t, base, done)
	return res, slowest
}

// probeUntil probes /healthcheck every 50 ms until done is closed and
// returns the slowest probe.
func probeUntil(t *testing.T, base string, done <-chan struct{}) time.Duration {
	t.Helper()
	var slowest time.Duration
	for {
		h := get(base + "/healthcheck")
		if h.err != nil || h.status != http.StatusOK {
			t.Fatalf("health probe: %d %v", h.status, h.err)
		}
		slowest = max(slowest, h.elapsed)
		select {
		case <-done:
			return slowest
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestServeAppFileHoldsTheLoopOnlyWhereItSays: a file mixing an awaited
// call and sleep, a blocking sleep, CPU work and log lines, and a `def`
// route. Health probes stall exactly while a step holds the loop (a
// blocking sleep, cpu in an async def), the detector names that step
// while it runs, and awaited steps and the whole `def` route leave the
// loop free.
func TestServeAppFileHoldsTheLoopOnlyWhereItSays(t *testing.T) {
	ext := startExternal(t, delay)
	file := writeApp(t, "app.toml", `
[routes."/awaited"]
def = "async"
steps = [{ call = "external" }, { sleep = "300ms" }, { log = 2 }]

[routes."/blocking"]
def = "async"
steps = [{ call = "external" }, { sleep = "600ms", blocking = true }]

[routes."/cpu"]
def = "async"
steps = [{ cpu = "600ms" }]

[routes."/pool"]
def = "sync"
steps = [{ sleep = "300ms", blocking = true }, { cpu = "300ms" }, { call = "external", blocking = true }, { log = 1 }]
`)
	p, base := startServe(t, "--app", file, "--external", ext)

	slowestBy, holds := map[string]time.Duration{}, map[string]bool{}
	for _, tc := range []struct {
		path    string
		holds   bool
		minTime time.Duration
		step    string // the detector's step and the end of its culprit
	}{
		{"/awaited", false, delay + 300*time.Millisecond, ""},
		{"/blocking", true, delay + 600*time.Millisecond, `routes\./blocking steps\[2\] sleep blocking: .*time\.Sleep`},
		{"/cpu", true, 600 * time.Millisecond, `routes\./cpu steps\[1\] cpu: .*worker\.burnCPU( → \S+)?`},
		{"/pool", false, 600*time.Millisecond + delay, ""},
	} {
		t.Run(tc.path[1:], func(t *testing.T) {
			from := len(p.lines())
			res, slowest := probeDuring(t, base, getAsync(base+tc.path))
			slowestBy[tc.path], holds[tc.path] = slowest, tc.holds
			if res.err != nil || res.status != http.StatusOK || res.body["message"] != "hello world" {
				t.Fatalf("GET %s: %d %v %v", tc.path, res.status, res.body, res.err)
			}
			if res.elapsed < tc.minTime {
				t.Errorf("GET %s took %v, want at least its steps' %v", tc.path, res.elapsed, tc.minTime)
			}
			id := res.header.Get("X-Request-ID")
			at, _ := p.waitLine(contract.StartedLine(id), from, time.Second)
			p.waitLine(contract.FinishedLine(id), at, time.Second)
			stall := contract.StallingLine("GET "+tc.path, id)
			if tc.holds {
				if slowest < 250*time.Millisecond {
					t.Errorf("health probes answered within %v while %s held the loop for 600ms", slowest, tc.path)
				}
				_, m := p.waitLine(stall, from, time.Second)
				if !regexp.MustCompile(`^` + tc.step + `$`).MatchString(m[4]) {
					t.Errorf("detector: %q, want the step and its culprit %q", m[4], tc.step)
				}
				return
			}
			if n := p.countBefore(stall, len(p.lines())); n != 0 {
				t.Errorf("%d detector warnings for %s, want none", n, tc.path)
			}
		})
	}
	// Probes wait for a held loop; while it is free they are answered in
	// milliseconds. Compared within this run, with a generous ratio, so
	// that a busy machine's hiccups slow both sides alike.
	heldLeast := time.Hour
	for path, d := range slowestBy {
		if holds[path] {
			heldLeast = min(heldLeast, d)
		}
	}
	for path, d := range slowestBy {
		if !holds[path] && d > heldLeast/2 {
			t.Errorf("a health probe took %v while %s ran, more than half of the %v it took while a step held the loop: %s's steps should leave it free",
				d, path, heldLeast, path)
		}
	}
	// The article's lines, per step: httpx-style when awaited, requests-style
	// when blocking, log steps' own lines, and the access log.
	out := p.output()
	for _, want := range []*regexp.Regexp{
		contract.CallLine("", 1, "200 OK"), contract.LogStepLine("", 2, 2),
		contract.CallLine("", 1, "200"), contract.LogStepLine("", 1, 1),
		regexp.MustCompile(`127\.0\.0\.1:\d+ - "GET /pool HTTP/1\.1" 200`),
	} {
		if !want.MatchString(out) {
			t.Errorf("no line matching %q", want)
		}
	}
	if r := get(base + "/mixed"); r.status != http.StatusNotFound {
		t.Errorf("GET /mixed with an app file: %d, want 404 (only the file's routes)", r.status)
	}
}

// TestAppFileStallInStatusAndTimeout: a file route that holds the loop is
// what `demo status` names, step included, and what --timeout kills.
func TestAppFileStallInStatusAndTimeout(t *testing.T) {
	t.Parallel()
	file := writeApp(t, "stuck.toml", `
[routes."/stuck"]
def = "async"
steps = [{ sleep = "1s", blocking = true }, { sleep = "1s", blocking = true }]
`)
	t.Run("status", func(t *testing.T) {
		t.Parallel()
		p, base := startServe(t, "--app", file)
		u, _ := url.Parse(base)
		stuck := getAsync(base + "/stuck")
		p.waitLine(contract.StallingLine("GET /stuck", ""), 0, 5*time.Second)
		snap := waitStatus(t, 3*time.Second, stalled, "--port", u.Port())
		if len(snap.Workers) != 1 || snap.Workers[0].StalledFor == 0 {
			t.Fatalf("status shows no stalled worker: %+v", snap)
		}
		culprit := snap.Workers[0].Culprit
		if !regexp.MustCompile(`^GET /stuck \(request [0-9a-f-]{36}\) at routes\./stuck steps\[1\] sleep blocking: .*time\.Sleep$`).MatchString(culprit) {
			t.Errorf("culprit %q: want the request, its step and time.Sleep", culprit)
		}
		if snap.Mode != file {
			t.Errorf("status mode %q, want the app file", snap.Mode)
		}
		if r := <-stuck; r.status != http.StatusOK {
			t.Errorf("GET /stuck: %d %v", r.status, r.err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		p, base := startServe(t, "--app", file, "--timeout", "1s")
		pid := onlyChild(t, p)
		stuck := getAsync(base + "/stuck")
		_, m := p.waitLine(workerTimeoutLine, 0, 5*time.Second)
		if m[1] != fmt.Sprint(pid) {
			t.Errorf("WORKER TIMEOUT for %s, want %d", m[1], pid)
		}
		if r := <-stuck; r.err == nil && r.status < 500 {
			t.Errorf("the request on the aborted worker got %d", r.status)
		}
		waitHealthy(t, base, 5*time.Second)
	})
}

// TestSighupRereadsTheAppFile: a rolling restart serves what the file says
// now; a broken file makes the replacement fail to boot (exit 3, its error
// at file:line:col) and the old worker keeps serving the old routes.
func TestSighupRereadsTheAppFile(t *testing.T) {
	t.Parallel()
	file := writeApp(t, "app.toml", "[routes.\"/v1\"]\ndef = \"async\"\nsteps = [{ log = 1 }]\n")
	p, base := startServe(t, "--app", file)
	pid := onlyChild(t, p)
	if r := get(base + "/v1"); r.status != http.StatusOK {
		t.Fatalf("GET /v1: %d %v", r.status, r.err)
	}
	ps, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(strings.ReplaceAll(string(ps), "\x00", " "), " --app "+file+" ") {
		t.Errorf("worker command line %q: want --app %s", ps, file)
	}

	if err := os.WriteFile(file, []byte("[routes.\"/v2\"]\ndef = \"asinc\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	at, _ := p.waitLine(regexp.MustCompile(regexp.QuoteMeta(file+`:2:7: def must be "async" or "sync", got "asinc": routes./v2`)), 0, 5*time.Second)
	p.waitLine(regexp.MustCompile(fmt.Sprintf(`failed to boot; keeping \[%d\].*exit status 3`, pid)), at, 5*time.Second)
	if r := get(base + "/v1"); r.status != http.StatusOK || onlyChild(t, p) != pid {
		t.Errorf("after a broken file: GET /v1 %d (%v), worker %d, want 200 from %d", r.status, r.err, onlyChild(t, p), pid)
	}

	if err := os.WriteFile(file, []byte("[routes.\"/v2\"]\ndef = \"sync\"\nsteps = [{ log = 1 }]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	p.waitLine(regexp.MustCompile(`Rolling restart done`), at, 5*time.Second)
	// The old worker accepts until it drains: ask once it is gone.
	p.waitLine(regexp.MustCompile(fmt.Sprintf(`Finished server process \[%d\]`, pid)), at, 5*time.Second)
	if r := get(base + "/v2"); r.status != http.StatusOK {
		t.Errorf("GET /v2 after the restart: %d %v", r.status, r.err)
	}
	if r := get(base + "/v1"); r.status != http.StatusNotFound {
		t.Errorf("GET /v1 after the restart: %d, want 404", r.status)
	}
}

// TestAppFileExternalMethodsAndOverride: call = "external" goes to the
// file's external unless --external overrides it; a route answers its own
// method (GET ones HEAD too) and 405 naming it otherwise.
func TestAppFileExternalMethodsAndOverride(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 10*time.Millisecond)
	file := writeApp(t, "app.toml", fmt.Sprintf(`
external = %q

[routes."/get"]
def = "async"
steps = [{ call = "external" }]

[routes."/post"]
def = "sync"
method = "POST"
steps = [{ call = "external", blocking = true }]
`, ext))
	_, base := startServe(t, "--app", file)
	if r := get(base + "/get"); r.status != http.StatusOK {
		t.Errorf("GET /get with the file's external: %d %v", r.status, r.err)
	}
	resp, err := http.Post(base+"/post", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Header.Get("X-Request-ID")) != 36 {
		t.Errorf("POST /post: %d, X-Request-ID %q", resp.StatusCode, resp.Header.Get("X-Request-ID"))
	}
	if r := get(base + "/post"); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" || r.body["detail"] != "Method Not Allowed" {
		t.Errorf("GET /post: %d, Allow %q, %v", r.status, r.header.Get("Allow"), r.body)
	}
	if resp, err := http.Head(base + "/get"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /get: %v %v", resp, err)
	}

	_, overridden := startServe(t, "--app", file, "--external", "http://127.0.0.1:1")
	if r := get(overridden + "/get"); r.status != http.StatusBadGateway || r.body["request_id"] != r.header.Get("X-Request-ID") {
		t.Errorf("GET /get with --external overriding the file: %d %v, want 502 naming the request", r.status, r.body)
	}
}
