package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"demo/childproc"
	"demo/contract"
)

// sideBySidePython returns a python3 that can run the FastAPI module `demo
// app fastapi` prints, or skips the test saying why.
func sideBySidePython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import uvicorn, fastapi, httpx, requests").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 (tried python3, /usr/bin/python3) imports uvicorn, fastapi, httpx and requests; " +
		"on Debian: apt-get install python3-uvicorn python3-fastapi python3-httpx python3-requests")
	return ""
}

// sideBySideShape is what one server did with two requests to one route:
// when each ended, counted from the first one's start, and the slowest
// health probe while they ran; and, to tell whether they ran one after
// the other, how long each took from its own sending.
type sideBySideShape struct {
	ends    [2]time.Duration
	slowest time.Duration
	took    [2]time.Duration // the first request's, the second's
}

// serialised: the second request took clearly longer than the first, as
// it does when it waits for the first to end (about twice as long, less
// the moment between the two) and not when they overlap (as long). Its
// own duration, rather than the gap between the two ends, does not grow
// with the time it takes to see the first one start on a busy machine.
func (sh sideBySideShape) serialised() bool { return sh.took[1] > sh.took[0]*135/100 }

// measureShape sends a request to path, and once the server logged that it
// started processing it, a second one and health probes every 50 ms, as
// the article's reader does from two consoles and a load balancer would.
func measureShape(t *testing.T, p *proc, base, path string) sideBySideShape {
	t.Helper()
	from := len(p.lines())
	start := time.Now()
	first := getAsync(base + path)
	p.waitLine(startedLine, from, 10*time.Second)
	// The second request is in the server's accept queue before the first
	// probe, as it would be from a second console.
	second, sent := getAsyncSent(base + path)
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatalf("the second request to %s was not sent within 5s", path)
	}
	secondSent := time.Since(start)
	var got sideBySideShape
	var results [2]result
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, ch := range []<-chan result{first, second} {
			results[i] = <-ch
			got.ends[i] = time.Since(start)
		}
	}()
	got.slowest = probeUntil(t, base, done)
	for _, r := range results {
		if r.err != nil || r.status != http.StatusOK || r.body["message"] != "hello world" {
			t.Fatalf("GET %s: %d %v %v", path, r.status, r.body, r.err)
		}
	}
	got.took = [2]time.Duration{got.ends[0], got.ends[1] - secondSent}
	// The first answer can come last (awaited routes overlap): sort.
	if got.ends[0] > got.ends[1] {
		got.ends[0], got.ends[1] = got.ends[1], got.ends[0]
	}
	return got
}

// getAsyncSent is getAsync that also says when the request has been
// written: connected, and in the server's socket buffer.
func getAsyncSent(url string) (<-chan result, <-chan struct{}) {
	ch, sent := make(chan result, 1), make(chan struct{})
	go func() {
		var once sync.Once
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(sent) }) }}
		ch <- getWith(httptrace.WithClientTrace(context.Background(), trace), url)
	}()
	return ch, sent
}

// TestSameShapeAsUvicorn runs one app file twice, beside one slow external
// API: served by demo, and exported by `demo app fastapi` and served by
// real Uvicorn. The same requests must have the same shape: when they end
// and how long health checks wait, within 15% + 0.3 s of Uvicorn's.
func TestSameShapeAsUvicorn(t *testing.T) {
	python := sideBySidePython(t)
	const externalDelay = 400 * time.Millisecond
	ext := startExternal(t, externalDelay)
	file := writeApp(t, "sidebyside.toml", `
[routes."/blocking"]
def = "async"
steps = [{ call = "external", blocking = true }, { cpu = "100ms" }]

[routes."/awaited"]
def = "async"
steps = [{ call = "external" }, { sleep = "200ms" }, { log = 2 }]

[routes."/pool"]
def = "sync"
steps = [{ call = "external", blocking = true }, { sleep = "200ms", blocking = true }]
`)
	module, errOut, code := runDemo(t, 10*time.Second, "app", "fastapi", file)
	if code != 0 {
		t.Fatalf("demo app fastapi: exit %d: %s", code, errOut)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sidebyside.py"), []byte(module), 0o644); err != nil {
		t.Fatal(err)
	}

	demo, demoURL := startServe(t, "--app", file, "--external", ext)
	ln, port := listenerFile(t)
	uv := startSpec(t, childproc.Spec{Path: python, Args: []string{"-m", "uvicorn", "sidebyside:app", "--workers", "1", "--fd", "3"}, Dir: dir, Env: []string{"EXTERNAL_API=" + ext}, ExtraFiles: []*os.File{ln}})
	uv.waitLine(regexp.MustCompile(`Uvicorn running on`), 0, 30*time.Second)
	uvURL := fmt.Sprintf("http://127.0.0.1:%d", port)

	near := func(a, b time.Duration) bool {
		d := a - b
		return max(d, -d) <= b*15/100+300*time.Millisecond
	}
	slowest := map[string]time.Duration{}
	for _, tc := range []struct {
		path  string
		holds bool
	}{{"/blocking", true}, {"/awaited", false}, {"/pool", false}} {
		t.Run(tc.path[1:], func(t *testing.T) {
			d := measureShape(t, demo, demoURL, tc.path)
			u := measureShape(t, uv, uvURL, tc.path)
			ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
			t.Logf("%s: demo ends %v, %v (took %v, %v), slowest health %v · uvicorn ends %v, %v (took %v, %v), slowest health %v", tc.path,
				ms(d.ends[0]), ms(d.ends[1]), ms(d.took[0]), ms(d.took[1]), ms(d.slowest),
				ms(u.ends[0]), ms(u.ends[1]), ms(u.took[0]), ms(u.took[1]), ms(u.slowest))
			for i := range d.ends {
				if !near(d.ends[i], u.ends[i]) {
					t.Errorf("request %d ended at %v on demo, %v on uvicorn", i+1, d.ends[i], u.ends[i])
				}
			}
			if !near(d.slowest, u.slowest) {
				t.Errorf("slowest health check %v on demo, %v on uvicorn", d.slowest, u.slowest)
			}
			// The shape itself, so that two servers wrong alike fail too: a
			// route that holds the loop runs its requests one after the
			// other, one that leaves it free overlaps them.
			for name, sh := range map[string]sideBySideShape{"demo": d, "uvicorn": u} {
				if serial := sh.serialised(); serial != tc.holds {
					t.Errorf("%s: %s's requests took %v and %v (the second sent after the first started): serialised %v, want %v", name, tc.path, sh.took[0], sh.took[1], serial, tc.holds)
				}
				slowest[name+tc.path] = sh.slowest
			}
		})
	}
	// Health probes wait for a held loop and not for a free one: compared
	// within this run, with a generous ratio.
	for _, name := range []string{"demo", "uvicorn"} {
		held := slowest[name+"/blocking"]
		for _, path := range []string{"/awaited", "/pool"} {
			if slowest[name+path] > held/2 {
				t.Errorf("%s: a health probe took %v during %s, more than half of the %v during /blocking", name, slowest[name+path], path, held)
			}
		}
	}
	// Both told the same story in their logs.
	for _, re := range []*regexp.Regexp{contract.CallLine("", 1, "200"), contract.CallLine("", 1, "200 OK"), contract.LogStepLine("", 2, 2), contract.FinishedLine("")} {
		for name, p := range map[string]*proc{"demo": demo, "uvicorn": uv} {
			if !re.MatchString(p.output()) {
				t.Errorf("%s logged no line matching %q", name, re)
			}
		}
	}
}
