package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
	"demo/contract"
)

// The article's experiment with a short delay: each request makes 2 calls
// of `delay`, so one request alone takes about 2×delay.
const delay = 300 * time.Millisecond

const oneRequest = 2 * delay

// fireTwo sends two requests at the same instant and, once the server has
// started processing one, a healthcheck. It returns the two requests'
// results and the healthcheck's.
func fireTwo(t *testing.T, p *proc, url, path string) (a, b, health result) {
	t.Helper()
	ra, rb := getAsync(url+path), getAsync(url+path)
	p.waitLine(startedLine, 0, 5*time.Second)
	health = get(url + "/healthcheck")
	a, b = <-ra, <-rb
	for _, r := range []result{a, b, health} {
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("request failed: status %d, err %v", r.status, r.err)
		}
	}
	if a.elapsed > b.elapsed {
		a, b = b, a
	}
	return a, b, health
}

func TestMixedOneWorkerSerialisesEverything(t *testing.T) {
	ext := startExternal(t, delay)
	p, url := startServe(t, "--mode", "mixed", "--external", ext)
	checkSerialised(t, p, url)
}

// checkSerialised runs the mixed story on a one-worker server: two requests
// sent together finish one after the other, and a healthcheck waits.
func checkSerialised(t *testing.T, p *proc, url string) {
	t.Helper()
	first, second, health := fireTwo(t, p, url, "/")

	if first.elapsed > oneRequest*3/2 {
		t.Errorf("first request took %v, want about %v", first.elapsed, oneRequest)
	}
	if second.elapsed < oneRequest*18/10 {
		t.Errorf("second request took %v, want at least 1.8×%v: it should wait for the first", second.elapsed, oneRequest)
	}
	if health.elapsed < delay {
		t.Errorf("healthcheck answered in %v while the loop was blocked; want at least one external call (%v)", health.elapsed, delay)
	}
	// The article's log: the second request starts only after the first finished.
	done, _ := p.waitLine(contract.FinishedLine(""), 0, time.Second)
	if n := p.countBefore(startedLine, done); n != 1 {
		t.Errorf("%d requests started before the first finished, want 1", n)
	}
}

func TestAsyncOneWorkerOverlaps(t *testing.T) {
	ext := startExternal(t, delay)
	p, url := startServe(t, "--mode", "async", "--external", ext)
	checkOverlapped(t, p, url)
}

// checkOverlapped runs the async story on a one-worker server: two requests
// sent together finish together, and a healthcheck answers at once.
func checkOverlapped(t *testing.T, p *proc, url string) {
	t.Helper()
	first, second, health := fireTwo(t, p, url, "/")

	if second.elapsed > oneRequest*3/2 {
		t.Errorf("second request took %v, want about %v: both should overlap", second.elapsed, oneRequest)
	}
	if first.elapsed < oneRequest*9/10 {
		t.Errorf("first request took %v, want about %v", first.elapsed, oneRequest)
	}
	if health.elapsed > delay/2 {
		t.Errorf("healthcheck took %v while requests waited on the external API; want well under %v", health.elapsed, delay)
	}
	// httpx-style response lines.
	p.waitLine(contract.CallLine("", 2, "200 OK"), 0, time.Second)
}

// plainExternal is the slow external API written with net/http alone, so
// that the stories do not rest on our event loop at both ends. It counts
// how many calls it held at once.
type plainExternal struct {
	url string

	mu            sync.Mutex
	calls, inside int
	mostInside    int
}

func startPlainExternal(t *testing.T, delay time.Duration) *plainExternal {
	t.Helper()
	e := &plainExternal{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.calls++
		e.inside++
		e.mostInside = max(e.mostInside, e.inside)
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			e.inside--
			e.mu.Unlock()
		}()
		wait := time.NewTimer(delay)
		defer wait.Stop()
		select {
		case <-wait.C:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"message":"Hello World"}`)
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// counts returns how many calls arrived and the most it held at once, and
// starts counting anew.
func (e *plainExternal) counts() (calls, mostInside int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	calls, mostInside = e.calls, e.mostInside
	e.calls, e.mostInside = 0, e.inside
	return calls, mostInside
}

// TestStoriesAgainstANetHTTPExternal runs the mixed and async stories
// against an external API that does not use our event loop: what they show
// is the worker's doing, and the API's own count of overlapping calls
// agrees.
func TestStoriesAgainstANetHTTPExternal(t *testing.T) {
	ext := startPlainExternal(t, delay)
	t.Run("mixed", func(t *testing.T) {
		p, url := startServe(t, "--mode", "mixed", "--external", ext.url)
		ext.counts()
		checkSerialised(t, p, url)
		if calls, most := ext.counts(); calls != 4 || most != 1 {
			t.Errorf("the external API saw %d calls, at most %d at once; want 4, one at a time", calls, most)
		}
	})
	t.Run("async", func(t *testing.T) {
		p, url := startServe(t, "--mode", "async", "--external", ext.url)
		ext.counts()
		checkOverlapped(t, p, url)
		if calls, most := ext.counts(); calls != 4 || most != 2 {
			t.Errorf("the external API saw %d calls, at most %d at once; want 4, two at a time", calls, most)
		}
	})
}

func TestMixedTwoWorkersRunInParallel(t *testing.T) {
	ext := startExternal(t, delay)
	p, url := startServe(t, "--workers", "2", "--mode", "mixed", "--external", ext)
	// Send the second request once one worker is blocked: the blocked worker
	// cannot accept, so the kernel's queue goes to the idle one.
	first := getAsync(url + "/")
	p.waitLine(startedLine, 0, 5*time.Second)
	start := time.Now()
	second := get(url + "/")
	r := <-first
	if r.err != nil || second.err != nil || r.status != 200 || second.status != 200 {
		t.Fatalf("requests failed: %v %v", r.err, second.err)
	}
	if second.elapsed > oneRequest*3/2 {
		t.Errorf("second request took %v, want about %v: the idle worker should take it", second.elapsed, oneRequest)
	}
	if wall := time.Since(start); wall > oneRequest*3/2 {
		t.Errorf("both requests took %v after the first started, want about %v", wall, oneRequest)
	}
}

func TestThreadpoolSizeBoundsConcurrency(t *testing.T) {
	ext := startExternal(t, delay)
	for _, tc := range []struct {
		size       string
		serialised bool
	}{{"1", true}, {"4", false}} {
		t.Run("size="+tc.size, func(t *testing.T) {
			p, url := startServe(t, "--mode", "threadpool", "--threadpool-size", tc.size, "--external", ext)
			_, second, health := fireTwo(t, p, url, "/")
			if tc.serialised && second.elapsed < oneRequest*18/10 {
				t.Errorf("pool of 1: second request took %v, want ≥ 1.8×%v", second.elapsed, oneRequest)
			}
			if !tc.serialised && second.elapsed > oneRequest*3/2 {
				t.Errorf("pool of 4: second request took %v, want about %v", second.elapsed, oneRequest)
			}
			if health.elapsed > delay/2 {
				t.Errorf("healthcheck took %v: the loop should stay free in threadpool mode", health.elapsed)
			}
		})
	}
}

func TestEveryPathAndTheArticleLogLines(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 10*time.Millisecond)
	p, url := startServe(t, "--mode", "async", "--external", ext)
	for _, path := range []string{"/", "/mixed", "/all-async", "/threadpool"} {
		r := get(url + path)
		if r.err != nil || r.status != 200 || r.body["message"] != "hello world" {
			t.Fatalf("GET %s: %d %v %v", path, r.status, r.body, r.err)
		}
		id := r.header.Get("X-Request-ID")
		if len(id) != 36 {
			t.Fatalf("GET %s: X-Request-ID %q is not a uuid", path, id)
		}
		at, _ := p.waitLine(contract.StartedLine(id), 0, time.Second)
		for n := 1; n <= 2; n++ {
			var m []string
			at, m = p.waitLine(contract.CallLine(id, n, ""), at, time.Second)
			if m[2] != "200" && m[2] != "200 OK" {
				t.Errorf("GET %s: call %d answered %q, want 200", path, n, m[2])
			}
		}
		p.waitLine(contract.FinishedLine(id), at, time.Second)
	}
	// uvicorn's access log format, with the client's port.
	p.waitLine(regexp.MustCompile(`127\.0\.0\.1:\d+ - "GET /threadpool HTTP/1\.1" 200`), 0, time.Second)

	if r := get(url + "/healthcheck"); r.status != 200 || r.body["status"] != "ok" {
		t.Errorf("healthcheck: %d %v", r.status, r.body)
	}
	if r := get(url + "/nope"); r.status != 404 || r.body["detail"] != "Not Found" {
		t.Errorf("unknown path: %d %v", r.status, r.body)
	}
	resp, err := http.Post(url+"/healthcheck", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST /healthcheck: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for _, h := range []string{"Date", "Server", "Content-Length"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("response has no %s header", h)
		}
	}
}

func TestExternalFailuresBecome502And504(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: bind one, note it, close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer failing.Close()
	slow := startExternal(t, time.Second)

	for _, tc := range []struct {
		name, external, timeout string
		status                  int
	}{
		{"refused", refused, "2s", 502},
		{"non-2xx", failing.URL, "2s", 502},
		{"timeout", slow, "200ms", 504},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := startServe(t, "--external", tc.external, "--external-timeout", tc.timeout, "--no-access-log")
			for _, path := range []string{"/mixed", "/all-async", "/threadpool"} {
				r := get(url + path)
				if r.err != nil || r.status != tc.status {
					t.Fatalf("GET %s: status %d (%v), want %d", path, r.status, r.err, tc.status)
				}
				if id, _ := r.body["request_id"].(string); id == "" || id != r.header.Get("X-Request-ID") {
					t.Errorf("GET %s: body %v lacks the request id", path, r.body)
				}
				if msg, _ := r.body["error"].(string); msg == "" {
					t.Errorf("GET %s: body %v lacks an error", path, r.body)
				}
			}
			if r := get(url + "/healthcheck"); r.status != 200 {
				t.Errorf("worker unhealthy after failures: %d %v", r.status, r.err)
			}
		})
	}
}

func TestMalformedRequestGets400AndWorkerLivesOn(t *testing.T) {
	t.Parallel()
	_, url := startServe(t, "--mode", "async")
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "THIS IS NOT HTTP\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400") {
		t.Fatalf("garbage got %q, want a 400", buf[:n])
	}
	if r := get(url + "/healthcheck"); r.status != 200 {
		t.Fatalf("worker did not survive garbage: %d %v", r.status, r.err)
	}
}

func TestPsShowsMasterAndWorkers(t *testing.T) {
	t.Parallel()
	p, _ := startServe(t, "--workers", "2", "--mode", "async")
	master := p.pid()
	kids := childPids(t, master)
	if len(kids) != 2 {
		t.Fatalf("master has %d children, want 2", len(kids))
	}
	seen := map[string]bool{}
	for _, pid := range kids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		line := strings.Join(args, " ")
		if len(args) < 5 || args[0] != "demo" || args[1] != "worker" || !strings.Contains(line, "--mode async") {
			t.Errorf("worker %d args %q, want `demo worker I/2 --mode async ...`", pid, line)
			continue
		}
		seen[args[2]] = true
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if want := "demo-worker-" + strings.Split(args[2], "/")[0]; strings.TrimSpace(string(comm)) != want {
			t.Errorf("worker %d comm %q, want %q", pid, comm, want)
		}
	}
	if !seen["1/2"] || !seen["2/2"] {
		t.Errorf("worker indexes %v, want 1/2 and 2/2", seen)
	}
}

func TestSigtermFinishesInFlightThenExits0(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, delay)
	p, url := startServe(t, "--mode", "mixed", "--external", ext)
	kids := childPids(t, p.pid())
	inflight := getAsync(url + "/")
	p.waitLine(startedLine, 0, 5*time.Second)
	p.signal(syscall.SIGTERM)
	if r := <-inflight; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: %d %v, want 200", r.status, r.err)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("master exited %d, want 0", code)
	}
	waitGone(t, kids, time.Second)
}

func TestSigkillMasterTakesBlockedWorkersWithIt(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 30*time.Second)
	p, url := startServe(t, "--workers", "2", "--mode", "mixed", "--external", ext)
	kids := childPids(t, p.pid())
	// Block one worker's loop inside a call, so only the process can react.
	stuck := getAsync(url + "/")
	p.waitLine(startedLine, 0, 5*time.Second)
	p.signal(syscall.SIGKILL)
	p.wait(5 * time.Second)
	waitGone(t, kids, time.Second)
	if r := <-stuck; r.err == nil {
		t.Errorf("request to a killed worker succeeded: %d", r.status)
	}
}

func TestKilledWorkerIsReplaced(t *testing.T) {
	t.Parallel()
	p, url := startServe(t, "--mode", "async")
	kids := childPids(t, p.pid())
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	died, _ := p.waitLine(regexp.MustCompile(fmt.Sprintf(`Child process \[%d\] died`, kids[0])), 0, 5*time.Second)
	p.waitLine(contract.WorkerStartedLine(""), died, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := get(url + "/healthcheck")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement served within 5s: %v", r.err)
		}
	}
	now := childPids(t, p.pid())
	if len(now) != 1 || now[0] == kids[0] {
		t.Errorf("children after the kill: %v (killed %d)", now, kids[0])
	}
}

func TestBadInputEndsWithOneLineAndNonZeroExit(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--workers", "0"}, 2, "--workers"},
		{[]string{"serve", "--mode", "foo"}, 2, "--mode"},
		{[]string{"serve", "--external", "localhost:8888"}, 2, "--external"},
		{[]string{"serve", "--external", "http://[::1"}, 2, "--external"},
		{[]string{"serve", "--workers", "many"}, 2, "workers"},
		{[]string{"serve", "--log-level", "loud"}, 2, "--log-level"},
		{[]string{"serve", "--reuse-port", "--epoll-exclusive"}, 2, "--epoll-exclusive"},
		{[]string{"serve", "--port", busyPort}, 1, "address already in use"},
		// More workers than can share one socket through nested epoll
		// sets: refused at once, saying the limit, why, and what to use.
		{[]string{"serve", "--port", "0", "--workers", "500"}, 2, "--workers is 500, but at most 499 workers can share this socket: Linux lets 500 event loops wait on one socket through nested epoll sets, and replacing a worker needs one more; --epoll-exclusive or --reuse-port allow more"},
		{[]string{"serve", "--port", "0", "--metrics", "9464"}, 2, `--metrics "9464": want HOST:PORT`},
		{[]string{"serve", "--port", "0", "--metrics", "127.0.0.1:" + busyPort}, 1, "--metrics 127.0.0.1:" + busyPort + ": listen tcp 127.0.0.1:" + busyPort + ": bind: address already in use"},
		{[]string{"external", "--port", busyPort}, 1, "address already in use"},
		{[]string{"worker", "1/1"}, 2, "demo serve"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(demoBin, tc.args...)
			out, _ := cmd.CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("output %q: want one line mentioning %q", out, tc.want)
			}
		})
	}
}

func TestLogFormatJSONAndLevels(t *testing.T) {
	t.Parallel()
	// JSON: every line is an object with the fields tools read.
	p, url := startServe(t, "--mode", "async", "--log-format", "json", "--external", "http://127.0.0.1:1")
	r := get(url + "/")
	if r.status != 502 {
		t.Fatalf("unreachable external: %d %v", r.status, r.err)
	}
	p.waitLine(regexp.MustCompile(`"GET / HTTP/1.1\\" 502`), 0, 5*time.Second)
	events := map[contract.Event]contract.LogEntry{}
	for _, line := range p.lines() {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("line %q lacks %q", line, k)
			}
		}
		if e, ok := contract.ParseLogEntry(line); ok && e.Event != "" {
			events[e.Event] = e
		}
	}
	// The entries tools read carry their facts as fields.
	if e := events[contract.EventRunning]; e.URL != url {
		t.Errorf("running entry %+v, want url %s", e, url)
	}
	if e := events[contract.EventWorkerReady]; e.Worker != "1/1" {
		t.Errorf("worker ready entry %+v, want worker 1 of 1", e)
	}
	if e := events[contract.EventRequestStarted]; e.RequestID != r.header.Get("X-Request-ID") || e.WorkerIndex() != 1 {
		t.Errorf("request started entry %+v, want request %s on worker 1", e, r.header.Get("X-Request-ID"))
	}

	// --log-level error: the failure is logged, nothing below it is. The
	// "running on" line is info, so readiness comes from a served request.
	f, port := listenerFile(t)
	q := startSpec(t, childproc.Spec{Args: []string{"serve", "--fd", "3", "--mode", "async", "--log-level", "error", "--external", "http://127.0.0.1:1"}, ExtraFiles: []*os.File{f}})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(t, base, 10*time.Second)
	if r := get(base + "/"); r.status != 502 {
		t.Fatalf("unreachable external: %d %v", r.status, r.err)
	}
	q.waitLine(regexp.MustCompile(` ERROR .*: failed: `), 0, 5*time.Second)
	for _, line := range q.lines() {
		if !strings.Contains(line, " ERROR ") {
			t.Errorf("--log-level error printed %q", line)
		}
	}
}
