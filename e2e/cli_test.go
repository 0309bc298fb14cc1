package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"demo/childproc"
)

// The command line as Uvicorn's and Gunicorn's users type it, run on the
// real binary.

// workers counts the worker processes a serve started.
func workers(t *testing.T, p *proc) int {
	t.Helper()
	return p.countBefore(regexp.MustCompile(`Started server process \[\d+\] \(worker \d+/\d+\)`), len(p.lines()))
}

// TestAppArgumentWithFlagsAround: Uvicorn's `APP` with flags before and
// after it; the flags after it count (urfave/cli alone would drop them).
func TestAppArgumentWithFlagsAround(t *testing.T) {
	t.Parallel()
	f, port := listenerFile(t)
	p := startSpec(t, childproc.Spec{Args: []string{"serve", "--mode", "async", "app.application:app", "--fd", "3", "--workers", "2", "--log-level", "debug"}, ExtraFiles: []*os.File{f}})
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	if want := fmt.Sprintf("http://127.0.0.1:%d", port); m[1] != want {
		t.Errorf("running on %s, want %s (the --fd after APP)", m[1], want)
	}
	if n := workers(t, p); n != 2 {
		t.Errorf("%d workers, want 2 (the --workers after APP)", n)
	}
	p.waitLine(regexp.MustCompile(`INFO APP "app\.application:app" noted, not imported \(demo cannot import Python\): serving the built-in app, --mode async`), 0, time.Second)
	p.waitLine(regexp.MustCompile(` DEBUG `), 0, time.Second) // --log-level after APP

	// Gunicorn's order: the app last; and the external API takes one too.
	ext := startDemo(t, "external", "external_api:app", "--port", "0", "--delay", "0")
	ext.waitLine(regexp.MustCompile(`APP "external_api:app" noted, not imported`), 0, 10*time.Second)
	ext.waitLine(externalRunning, 0, 10*time.Second)
}

// TestSecondsReachTheWorker: `--timeout-keep-alive 1.5` is 1.5 s in the
// worker that enforces it.
func TestSecondsReachTheWorker(t *testing.T) {
	t.Parallel()
	p, url := startServe(t, "--mode", "async", "--timeout-keep-alive", "0.3", "--external-timeout", "1500")
	argv := strings.Join(workerArgv(t, onlyChild(t, p)), " ")
	if !strings.Contains(argv, "--timeout-keep-alive 300ms") || !strings.Contains(argv, "--external-timeout 25m0s") {
		t.Errorf("worker argv %q", argv)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("an idle connection was closed after %v (%v), want about 0.3s", time.Since(start), err)
	}
}

// TestGunicornSpellings: -w, -b (HOST:PORT, unix:PATH, fd://N),
// --graceful-timeout, --max-requests, --max-requests-jitter, --keep-alive
// and -t set demo's own settings.
func TestGunicornSpellings(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 5*time.Second)
	p, url := startServe(t, "-w", "2", "--graceful-timeout", "0.5", "--max-requests", "100", "--max-requests-jitter", "5", "--keep-alive", "2", "-t", "30", "--mode", "mixed", "--external", ext)
	if n := workers(t, p); n != 2 {
		t.Errorf("-w 2: %d workers", n)
	}
	kids := childPids(t, p.pid())
	if len(kids) != 2 {
		t.Fatalf("%d children", len(kids))
	}
	maxRequests := regexp.MustCompile(`--limit-max-requests (\d+)`)
	for _, pid := range kids {
		argv := strings.Join(workerArgv(t, pid), " ")
		m := maxRequests.FindStringSubmatch(argv)
		if !strings.Contains(argv, "--timeout-keep-alive 2s") || m == nil || m[1] < "100" || m[1] > "105" || len(m[1]) != 3 {
			t.Errorf("worker argv %q: want --timeout-keep-alive 2s and --limit-max-requests 100..105", argv)
		}
	}
	// SIGTERM while a request blocks a worker for 5 s: the grace of 0.5 s
	// runs out first.
	getAsync(url + "/")
	p.waitLine(startedLine, 0, 5*time.Second)
	p.signal(15)
	p.waitLine(regexp.MustCompile(`Graceful shutdown timed out after 500ms`), 0, 3*time.Second)
	if code := p.wait(5 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := startDemo(t, "serve", "--bind", fmt.Sprintf("127.0.0.1:%d", port), "--mode", "async")
	if _, m := b.waitLine(serveRunning, 0, 10*time.Second); m[1] != fmt.Sprintf("http://127.0.0.1:%d", port) {
		t.Errorf("--bind 127.0.0.1:%d: running on %s", port, m[1])
	}

	sock := filepath.Join(t.TempDir(), "demo.sock")
	q := startDemo(t, "serve", "-b", "unix:"+sock, "--mode", "async")
	q.waitLine(regexp.MustCompile(`demo running on unix:`+regexp.QuoteMeta(sock)), 0, 10*time.Second)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://demo/healthcheck")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("over -b unix:%s: %v %v", sock, resp, err)
	}
	resp.Body.Close()

	f, fdPort := listenerFile(t)
	r := startSpec(t, childproc.Spec{Args: []string{"serve", "--bind", "fd://3", "--mode", "async"}, ExtraFiles: []*os.File{f}})
	if _, m := r.waitLine(serveRunning, 0, 10*time.Second); m[1] != fmt.Sprintf("http://127.0.0.1:%d", fdPort) {
		t.Errorf("--bind fd://3: running on %s", m[1])
	}
}

// TestLogLevelCriticalAndTrace: critical logs nothing (demo has nothing
// that bad to say); trace logs what debug does and each connection's and
// request's steps, as Uvicorn's trace level does.
func TestLogLevelCriticalAndTrace(t *testing.T) {
	t.Parallel()
	f, port := listenerFile(t)
	p := startSpec(t, childproc.Spec{Args: []string{"serve", "--fd", "3", "--mode", "async", "--log-level", "critical", "--external", "http://127.0.0.1:1"}, ExtraFiles: []*os.File{f}})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(t, base, 10*time.Second)
	if r := get(base + "/"); r.status != 502 { // an ERROR line at any level below critical
		t.Fatalf("unreachable external: %d %v", r.status, r.err)
	}
	p.signal(15)
	p.wait(10 * time.Second)
	if out := p.output(); out != "" {
		t.Errorf("--log-level critical logged:\n%s", out)
	}

	q, url := startServe(t, "--mode", "async", "--log-level", "trace")
	q.waitLine(regexp.MustCompile(` DEBUG Child process \[\d+\] ready`), 0, 5*time.Second)
	argv := strings.Join(workerArgv(t, onlyChild(t, q)), " ")
	if !strings.Contains(argv, "--log-level trace") {
		t.Errorf("worker argv %q", argv)
	}
	if r := get(url + "/healthcheck"); r.status != 200 {
		t.Fatalf("GET /healthcheck: %d %v", r.status, r.err)
	}
	from := 0
	for _, step := range []string{
		`HTTP connection made`,
		`request 1 to the app: GET /healthcheck HTTP/1\.1`,
		`response 1 from the app: 200, 15 bytes of body`,
		`HTTP connection lost`,
	} {
		from, _ = q.waitLine(regexp.MustCompile(` TRACE worker-1\[\d+\] 127\.0\.0\.1:\d+ - `+step+`$`), from, 5*time.Second)
	}
}

// TestProxyHeadersInTheAccessLog: the client of X-Forwarded-For, and the
// scheme of X-Forwarded-Proto (JSON's field), from trusted peers only;
// 127.0.0.1 is trusted by default, FORWARDED_ALLOW_IPS is honoured.
func TestProxyHeadersInTheAccessLog(t *testing.T) {
	t.Parallel()
	forwarded := func(url string) {
		req, _ := http.NewRequest("GET", url+"/healthcheck", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.9, 203.0.113.7")
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	peer := regexp.MustCompile(`INFO worker-1\[\d+\] 127\.0\.0\.1:\d+ - "GET /healthcheck HTTP/1\.1" 200$`)
	for _, tc := range []struct {
		env  []string
		args []string
		want *regexp.Regexp
	}{
		{nil, nil, regexp.MustCompile(`INFO worker-1\[\d+\] 203\.0\.113\.7:0 - "GET /healthcheck HTTP/1\.1" 200$`)},
		{nil, []string{"--forwarded-allow-ips", "127.0.0.1,203.0.113.0/24"}, regexp.MustCompile(`INFO worker-1\[\d+\] 198\.51\.100\.9:0 - "GET /healthcheck HTTP/1\.1" 200$`)},
		{nil, []string{"--forwarded-allow-ips", "10.0.0.1"}, peer},
		{[]string{"FORWARDED_ALLOW_IPS=10.0.0.1"}, nil, peer},
		{nil, []string{"--no-proxy-headers"}, peer},
		{nil, []string{"--root-path", "/api"}, regexp.MustCompile(`INFO worker-1\[\d+\] 203\.0\.113\.7:0 - "GET /api/healthcheck HTTP/1\.1" 200$`)},
	} {
		p, url := startServeEnv(t, tc.env, append([]string{"--port", "0", "--mode", "async"}, tc.args...)...)
		forwarded(url)
		p.waitLine(tc.want, 0, 5*time.Second)
	}
	p, url := startServeEnv(t, nil, "--port", "0", "--mode", "async", "--log-format", "json")
	forwarded(url)
	p.waitLine(regexp.MustCompile(`"msg":"203\.0\.113\.7:0 - \\"GET /healthcheck HTTP/1\.1\\" 200","client":"203\.0\.113\.7:0","scheme":"https"`), 0, 5*time.Second)
}

// TestMaxIncompleteEventSize: uvicorn's header limit, 16 KiB by default,
// is the worker's: a larger header block gets 431, the worker lives on.
func TestMaxIncompleteEventSize(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		args []string
		want int
	}{{nil, 200}, {[]string{"--h11-max-incomplete-event-size", "1024"}, 431}} {
		_, url := startServe(t, append([]string{"--mode", "async"}, tc.args...)...)
		req, _ := http.NewRequest("GET", url+"/healthcheck", nil)
		req.Header.Set("X-Big", big)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%v: a 2 KB header got %d, want %d", tc.args, resp.StatusCode, tc.want)
		}
		if r := get(url + "/healthcheck"); r.status != 200 {
			t.Errorf("%v: then /healthcheck: %d %v", tc.args, r.status, r.err)
		}
	}
}

// TestSocketActivationWarnsAboutIgnoredFlags: with a socket passed in
// (--fd, systemd), --port, --host and --backlog say nothing about it: each
// one given, on the command line or in the environment, is warned about.
func TestSocketActivationWarnsAboutIgnoredFlags(t *testing.T) {
	t.Parallel()
	f, _ := listenerFile(t)
	p := startSpec(t, childproc.Spec{Args: []string{"serve", "--fd", "3", "--port", "9000", "--mode", "async"}, Env: []string{"DEMO_BACKLOG=5"}, ExtraFiles: []*os.File{f}})
	p.waitLine(regexp.MustCompile(`WARN Ignoring --port: the socket is the one inherited by --fd`), 0, 10*time.Second)
	p.waitLine(regexp.MustCompile(`WARN Ignoring --backlog \(DEMO_BACKLOG=5\): the socket is the one inherited by --fd`), 0, 10*time.Second)

	g, _ := listenerFile(t)
	q := startSpec(t, childproc.Spec{Path: "sh", Args: []string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve "$@"`, demoBin, "--mode", "async", "--host", "0.0.0.0", "--reuse-port"}, ExtraFiles: []*os.File{g}})
	q.waitLine(regexp.MustCompile(`WARN Ignoring --host: the socket is the one systemd passed`), 0, 10*time.Second)
	q.waitLine(regexp.MustCompile(`WARN Ignoring --reuse-port: the socket is the one systemd passed`), 0, 10*time.Second)
	q.waitLine(serveRunning, 0, 10*time.Second)

	h, _ := listenerFile(t)
	r := startSpec(t, childproc.Spec{Path: "sh", Args: []string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve "$@"`, demoBin, "--mode", "async", "-b", "0.0.0.0:80"}, ExtraFiles: []*os.File{h}})
	r.waitLine(regexp.MustCompile(`WARN Ignoring -b: the socket is the one systemd passed`), 0, 10*time.Second)
	r.waitLine(serveRunning, 0, 10*time.Second)
}
