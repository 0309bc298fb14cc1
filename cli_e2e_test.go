package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"demo/contract"
)

// The command line as Uvicorn's and Gunicorn's users type it, run on the
// real binary.

// runDemoEnv is runDemo with extra environment variables.
func runDemoEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, demoBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if ctx.Err() != nil || (err != nil && !errors.As(err, &exit)) {
		t.Fatalf("demo %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// startServeEnv starts `demo serve args...` with extra environment
// variables and waits until it runs.
func startServeEnv(t *testing.T, env []string, args ...string) (*proc, string) {
	t.Helper()
	cmd := exec.Command(demoBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := startCmd(t, cmd)
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	return p, m[1]
}

// workers counts the worker processes a serve started.
func workers(t *testing.T, p *proc) int {
	t.Helper()
	return p.countBefore(regexp.MustCompile(`Started server process \[\d+\] \(worker \d+/\d+\)`), len(p.snapshotLines()))
}

// TestAppArgumentWithFlagsAround: Uvicorn's `APP` with flags before and
// after it; the flags after it count (urfave/cli alone would drop them).
func TestAppArgumentWithFlagsAround(t *testing.T) {
	f, port := listenerFile(t)
	cmd := exec.Command(demoBin, "serve", "--mode", "async", "app.application:app", "--fd", "3", "--workers", "2", "--log-level", "debug")
	cmd.ExtraFiles = []*os.File{f}
	p := startCmd(t, cmd)
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

// TestExtraArgumentsAreRefused: every command refuses an argument it does
// not take, instead of ignoring it.
func TestExtraArgumentsAreRefused(t *testing.T) {
	app := newApp()
	var paths [][]string
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			path := append(slices.Clone(prefix), cmd.Name)
			if cmd.Action != nil {
				paths = append(paths, path)
			}
			walk(path, cmd.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if len(paths) < 12 {
		t.Fatalf("found only %d commands: %q", len(paths), paths)
	}
	for _, path := range paths {
		cmd := app.Commands[0]
		cmds := app.Commands
		for _, name := range path {
			cmd = findCommand(cmds, name)
			cmds = cmd.Subcommands
		}
		_, max := positionalArgs(cmd.ArgsUsage)
		args := slices.Clone(path)
		for i := range max + 1 {
			args = append(args, fmt.Sprintf("extra%d", i+1))
		}
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			_, stderr, code := runDemoEnv(t, nil, args...)
			if code != 2 || !strings.Contains(stderr, "extra1") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("demo %s: exit %d, stderr %q; want exit 2 and one line naming the arguments", strings.Join(args, " "), code, stderr)
			}
		})
	}
}

// TestEveryDurationFlagTakesSeconds: each duration flag of every command
// takes 1.5 (seconds) and 1500ms alike, and anything else is one line
// naming the flag with two dashes and both forms.
func TestEveryDurationFlagTakesSeconds(t *testing.T) {
	app := newApp()
	n := 0
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			path := append(slices.Clone(prefix), cmd.Name)
			for _, f := range cmd.Flags {
				if !isDuration(f) {
					continue
				}
				n++
				name := f.Names()[0]
				for _, v := range []string{"1.5", "1500ms", "2"} {
					args := append(slices.Clone(path), "--"+name, v, "--help")
					if _, stderr, code := runDemoEnv(t, nil, args...); code != 0 {
						t.Errorf("demo %s: exit %d: %s", strings.Join(args, " "), code, stderr)
					}
				}
				args := append(slices.Clone(path), "--"+name, "1.5x")
				_, stderr, code := runDemoEnv(t, nil, args...)
				want := fmt.Sprintf(`demo: invalid value "1.5x" for --%s: want seconds (30, 1.5) or a duration with a unit (30s, 1m30s, 500ms)`, name)
				if code != 2 || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("demo %s: exit %d, stderr %q; want %q", strings.Join(args, " "), code, stderr, want)
				}
			}
			walk(path, cmd.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if n < 20 {
		t.Errorf("checked %d duration flags: the walk missed some", n)
	}
}

// TestSecondsReachTheWorker: `--timeout-keep-alive 1.5` is 1.5 s in the
// worker that enforces it.
func TestSecondsReachTheWorker(t *testing.T) {
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

// TestFlagErrorsNameTheFlag: one line, the flag with its dashes (the
// spelling typed, or the variable it came from), exit code 2.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"serve", "--workers", "many"}, `invalid value "many" for --workers: want a whole number`},
		{nil, []string{"serve", "--workers"}, `--workers needs a value`},
		{nil, []string{"serve", "--access-log=maybe"}, `invalid value "maybe" for --access-log: want true or false`},
		{nil, []string{"serve", "--wrkers", "2"}, `unknown flag --wrkers (did you mean --workers?)`},
		{nil, []string{"serve", "-w", "0"}, `-w must be at least 1, got 0`},
		{nil, []string{"serve", "--keep-alive", "0"}, `--keep-alive must be positive, got 0s`},
		{nil, []string{"serve", "--timeout-graceful-shutdown", "-1"}, `--timeout-graceful-shutdown must be 0 (no grace) or more, got -1s`},
		{nil, []string{"serve", "--port", "70000"}, `--port must be 0-65535, got 70000`},
		{nil, []string{"serve", "--log-level", "loud"}, `--log-level "loud": want one of trace, debug, info, warning, error, critical`},
		{nil, []string{"serve", "--h11-max-incomplete-event-size", "10"}, `--h11-max-incomplete-event-size must be at least 64 bytes`},
		{nil, []string{"serve", "--root-path", "api"}, `--root-path "api": want a path that starts with /`},
		{nil, []string{"serve", "--forwarded-allow-ips", "localhost"}, `--forwarded-allow-ips "localhost": not an address`},
		{nil, []string{"serve", "-w", "2", "--workers", "3"}, `--workers and -w are the same flag: give it once`},
		{nil, []string{"serve", "--bind", "127.0.0.1:0", "--bind", "127.0.0.1:1"}, `--bind given 2 times: demo listens on one socket`},
		{nil, []string{"serve", "-b", "127.0.0.1:0", "--port", "1"}, `-b and --port both say where to listen: give one`},
		{nil, []string{"external", "--port", "-1"}, `--port must be 0-65535, got -1`},
		{nil, []string{"external", "--fault", "melt"}, `--fault "melt": want one of`},
		{nil, []string{"app", "example", "--calls", "-1"}, `--calls must be 0 or more, got -1`},
		{[]string{"DEMO_WORKERS=many"}, []string{"serve"}, `invalid value "many" in DEMO_WORKERS for --workers: want a whole number`},
		{[]string{"WEB_CONCURRENCY=0"}, []string{"serve"}, `--workers (WEB_CONCURRENCY=0) must be at least 1, got 0`},
		{[]string{"DEMO_TIMEOUT=soon"}, []string{"serve"}, `invalid value "soon" in DEMO_TIMEOUT for --timeout: want seconds (30, 1.5) or a duration with a unit`},
	} {
		t.Run(strings.Join(append(tc.env, tc.args...), " "), func(t *testing.T) {
			_, stderr, code := runDemoEnv(t, tc.env, tc.args...)
			if code != 2 || !strings.HasPrefix(stderr, "demo: "+tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line starting %q", code, stderr, "demo: "+tc.want)
			}
		})
	}
}

// TestVersionHelpAndUnknownCommands: --version, -v and `demo version`;
// `demo help CMD`; an unknown command or topic exits 2 with the commands.
func TestVersionHelpAndUnknownCommands(t *testing.T) {
	version, _, code := runDemoEnv(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(version, "demo version ") || !strings.Contains(version, "go1.") {
		t.Errorf("--version: exit %d, %q", code, version)
	}
	for _, args := range [][]string{{"-v"}, {"version"}} {
		if out, _, code := runDemoEnv(t, nil, args...); code != 0 || out != version {
			t.Errorf("demo %s: exit %d, %q; want %q", args, code, out, version)
		}
	}
	for _, topic := range [][]string{{"serve"}, {"app", "check"}, {"experiment"}} {
		want, _, _ := runDemoEnv(t, nil, append(topic, "--help")...)
		got, stderr, code := runDemoEnv(t, nil, append([]string{"help"}, topic...)...)
		if code != 0 || got != want || !strings.Contains(got, "demo "+strings.Join(topic, " ")) {
			t.Errorf("demo help %s: exit %d (%s), output differs from --help:\n%s", topic, code, stderr, got)
		}
	}
	if out, _, code := runDemoEnv(t, nil, "help"); code != 0 || !strings.Contains(out, "COMMANDS:") {
		t.Errorf("demo help: exit %d\n%s", code, out)
	}
	list := "the commands are experiment, serve, external, app, status, bench, version, help, completion, man"
	for args, want := range map[string]string{
		"serv":         `demo: unknown command "serv" (did you mean "serve"?); ` + list,
		"frobnicate":   `demo: unknown command "frobnicate"; ` + list,
		"help nosuch":  `demo: no help for ["nosuch"]: ` + list,
		"help serve x": `demo: no help for ["serve" "x"]: ` + list,
	} {
		out, stderr, code := runDemoEnv(t, nil, strings.Fields(args)...)
		if code != 2 || out != "" || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("demo %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, stderr, want)
		}
	}
}

// TestEnvironmentConfiguresServe: every serve flag reads DEMO_<FLAG>,
// --workers also WEB_CONCURRENCY; the command line wins, then DEMO_,
// then WEB_CONCURRENCY, then the default; --help shows the variables.
func TestEnvironmentConfiguresServe(t *testing.T) {
	help, _, _ := runDemoEnv(t, nil, "serve", "--help")
	app := newApp()
	for _, f := range findCommand(app.Commands, "serve").VisibleFlags() {
		name := f.Names()[0]
		if name == "help" {
			continue
		}
		if !strings.Contains(help, "[$"+envName(name)) {
			t.Errorf("serve --help does not show $%s for --%s", envName(name), name)
		}
	}
	for _, f := range findCommand(app.Commands, "serve").VisibleFlags() {
		if env, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, v := range env.GetEnvVars() {
				if len(contract.WithoutConfigEnv([]string{v + "=1"})) != 0 {
					t.Errorf("%s configures demo serve, but the tools' children would inherit it (contract.WithoutConfigEnv)", v)
				}
			}
		}
	}
	if !strings.Contains(help, "[$DEMO_WORKERS, $WEB_CONCURRENCY]") || !strings.Contains(help, "[$DEMO_FORWARDED_ALLOW_IPS, $FORWARDED_ALLOW_IPS]") {
		t.Errorf("serve --help does not show WEB_CONCURRENCY and FORWARDED_ALLOW_IPS")
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want int
	}{
		{[]string{"WEB_CONCURRENCY=2"}, nil, 2},
		{[]string{"WEB_CONCURRENCY=2", "DEMO_WORKERS=3"}, nil, 3},
		{[]string{"WEB_CONCURRENCY=2", "DEMO_WORKERS=3"}, []string{"-w", "1"}, 1},
	} {
		p, _ := startServeEnv(t, tc.env, append([]string{"--port", "0", "--mode", "async"}, tc.args...)...)
		if n := workers(t, p); n != tc.want {
			t.Errorf("%v %v: %d workers, want %d", tc.env, tc.args, n, tc.want)
		}
	}
	// A duration in seconds and a bool from the environment reach the worker.
	p, _ := startServeEnv(t, []string{"DEMO_TIMEOUT_KEEP_ALIVE=2.5", "DEMO_ACCESS_LOG=false", "DEMO_PORT=0"}, "--mode", "async")
	if argv := strings.Join(workerArgv(t, onlyChild(t, p)), " "); !strings.Contains(argv, "--timeout-keep-alive 2.5s") || !strings.Contains(argv, "--access-log=false") {
		t.Errorf("worker argv %q", argv)
	}
	// Workers read no DEMO_ variable: serve passes them everything.
	if strings.Contains(findCommand(app.Commands, "worker").Flags[0].String(), "$DEMO") {
		t.Errorf("demo worker's flags read the environment")
	}
}

// TestGunicornSpellings: -w, -b (HOST:PORT, unix:PATH, fd://N),
// --graceful-timeout, --max-requests, --max-requests-jitter, --keep-alive
// and -t set demo's own settings.
func TestGunicornSpellings(t *testing.T) {
	ext := startExternal(t, 5*time.Second)
	p, url := startServe(t, "-w", "2", "--graceful-timeout", "0.5", "--max-requests", "100", "--max-requests-jitter", "5", "--keep-alive", "2", "-t", "30", "--mode", "mixed", "--external", ext)
	if n := workers(t, p); n != 2 {
		t.Errorf("-w 2: %d workers", n)
	}
	kids := childPids(t, p.cmd.Process.Pid)
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
	cmd := exec.Command(demoBin, "serve", "--bind", "fd://3", "--mode", "async")
	cmd.ExtraFiles = []*os.File{f}
	r := startCmd(t, cmd)
	if _, m := r.waitLine(serveRunning, 0, 10*time.Second); m[1] != fmt.Sprintf("http://127.0.0.1:%d", fdPort) {
		t.Errorf("--bind fd://3: running on %s", m[1])
	}
}

// TestNotedAndUnsupportedSpellings: Uvicorn's and Gunicorn's options that
// change nothing here are accepted and noted in the log; the ones demo
// does not support are refused with the reason.
func TestNotedAndUnsupportedSpellings(t *testing.T) {
	var args []string
	var want []*regexp.Regexp
	for _, s := range spellings {
		for _, name := range slices.Concat(s.uvicorn, s.gunicorn) {
			if name == "APP" {
				continue
			}
			switch s.kind {
			case noted:
				if slices.Contains(args, name) {
					continue
				}
				args = append(args, name)
				given := name
				if s.takesValue {
					args = append(args, "x1")
					given += " x1"
				}
				want = append(want, regexp.MustCompile(`INFO `+regexp.QuoteMeta(given+" noted, changes nothing: "+s.demo)+`$`))
			case unsupported:
				_, stderr, code := runDemoEnv(t, nil, "serve", name)
				if want := fmt.Sprintf("demo: %s is not supported: %s", name, s.demo); code != 2 || !strings.HasPrefix(stderr, want) {
					t.Errorf("demo serve %s: exit %d, %q; want %q", name, code, stderr, want)
				}
			}
		}
	}
	p, _ := startServe(t, append([]string{"--mode", "async"}, args...)...)
	for _, re := range want {
		p.waitLine(re, 0, time.Second)
	}
	help, _, _ := runDemoEnv(t, nil, "serve", "--help")
	if strings.Contains(help, "--loop") || strings.Contains(help, "--worker-class") {
		t.Errorf("serve --help lists the noted spellings:\n%s", help)
	}
}

// TestLogLevelCriticalAndTrace: critical logs nothing (demo has nothing
// that bad to say); trace logs what debug does.
func TestLogLevelCriticalAndTrace(t *testing.T) {
	f, port := listenerFile(t)
	cmd := exec.Command(demoBin, "serve", "--fd", "3", "--mode", "async", "--log-level", "critical", "--external", "http://127.0.0.1:1")
	cmd.ExtraFiles = []*os.File{f}
	p := startCmd(t, cmd)
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

	q, _ := startServe(t, "--mode", "async", "--log-level", "trace")
	q.waitLine(regexp.MustCompile(` DEBUG Child process \[\d+\] ready`), 0, 5*time.Second)
	argv := strings.Join(workerArgv(t, onlyChild(t, q)), " ")
	if !strings.Contains(argv, "--log-level trace") {
		t.Errorf("worker argv %q", argv)
	}
}

// TestProxyHeadersInTheAccessLog: the client of X-Forwarded-For, and the
// scheme of X-Forwarded-Proto (JSON's field), from trusted peers only;
// 127.0.0.1 is trusted by default, FORWARDED_ALLOW_IPS is honoured.
func TestProxyHeadersInTheAccessLog(t *testing.T) {
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
	f, _ := listenerFile(t)
	cmd := exec.Command(demoBin, "serve", "--fd", "3", "--port", "9000", "--mode", "async")
	cmd.Env = append(os.Environ(), "DEMO_BACKLOG=5")
	cmd.ExtraFiles = []*os.File{f}
	p := startCmd(t, cmd)
	p.waitLine(regexp.MustCompile(`WARN Ignoring --port: the socket is the one inherited by --fd`), 0, 10*time.Second)
	p.waitLine(regexp.MustCompile(`WARN Ignoring --backlog \(DEMO_BACKLOG=5\): the socket is the one inherited by --fd`), 0, 10*time.Second)

	g, _ := listenerFile(t)
	cmd = exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve "$@"`, demoBin, "--mode", "async", "--host", "0.0.0.0", "--reuse-port")
	cmd.ExtraFiles = []*os.File{g}
	q := startCmd(t, cmd)
	q.waitLine(regexp.MustCompile(`WARN Ignoring --host: the socket is the one systemd passed`), 0, 10*time.Second)
	q.waitLine(regexp.MustCompile(`WARN Ignoring --reuse-port: the socket is the one systemd passed`), 0, 10*time.Second)
	q.waitLine(serveRunning, 0, 10*time.Second)

	h, _ := listenerFile(t)
	cmd = exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve "$@"`, demoBin, "--mode", "async", "-b", "0.0.0.0:80")
	cmd.ExtraFiles = []*os.File{h}
	r := startCmd(t, cmd)
	r.waitLine(regexp.MustCompile(`WARN Ignoring -b: the socket is the one systemd passed`), 0, 10*time.Second)
	r.waitLine(serveRunning, 0, 10*time.Second)
}

// TestShellCompletion: bash, with the script demo prints, completes
// commands and flags from the binary, and not the hidden ones.
func TestShellCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to try the completion in")
	}
	script, _, code := runDemoEnv(t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("demo completion bash: exit %d", code)
	}
	dir := t.TempDir()
	if err := os.Symlink(demoBin, filepath.Join(dir, "demo")); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS as bash sets them, the last one being completed.
		line := fmt.Sprintf(`%s
COMP_WORDS=(%s); COMP_CWORD=%d; _demo_complete; printf '%%s\n' "${COMPREPLY[@]}"`,
			script, strings.Join(words, " "), len(words)-1)
		cmd := exec.Command(bash, "--norc", "-c", line)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash: %v", err)
		}
		return strings.Fields(string(out))
	}
	if got := complete("demo", "se"); !slices.Equal(got, []string{"serve"}) {
		t.Errorf("demo se<TAB>: %q", got)
	}
	if got := complete("demo", "serve", "--wor"); !slices.Equal(got, []string{"--workers"}) {
		t.Errorf("demo serve --wor<TAB>: %q", got)
	}
	if got := complete("demo", "app", ""); !slices.Equal(got, []string{"example", "check", "fastapi"}) {
		t.Errorf("demo app <TAB>: %q", got)
	}
	if got := complete("demo", "serve", "--lo"); slices.Contains(got, "--loop") || !slices.Contains(got, "--log-level") {
		t.Errorf("demo serve --lo<TAB>: %q (--loop is hidden)", got)
	}
	if got := complete("demo", ""); slices.Contains(got, "worker") || !slices.Contains(got, "experiment") {
		t.Errorf("demo <TAB>: %q (worker is hidden)", got)
	}
	for _, shell := range []string{"zsh", "fish"} {
		if out, _, code := runDemoEnv(t, nil, "completion", shell); code != 0 || !strings.Contains(out, "demo") {
			t.Errorf("demo completion %s: exit %d", shell, code)
		}
	}
}

// TestManPage: `demo man` is a roff page with every command and every
// visible flag of serve, and man(1) renders it without complaint.
func TestManPage(t *testing.T) {
	page, stderr, code := runDemoEnv(t, nil, "man")
	if code != 0 || !strings.HasPrefix(page, ".nh\n.TH demo 1") {
		t.Fatalf("demo man: exit %d (%s), starts %q", code, stderr, page[:min(len(page), 40)])
	}
	app := newApp()
	for _, cmd := range app.VisibleCommands() {
		if !strings.Contains(page, cmd.Name) {
			t.Errorf("the man page lacks the command %s", cmd.Name)
		}
	}
	for _, f := range findCommand(app.Commands, "serve").VisibleFlags() {
		name := f.Names()[0]
		if !strings.Contains(page, "--"+name) || (name != "help" && !strings.Contains(page, `\fB`+envName(name)+`\fP`)) {
			t.Errorf("the man page lacks --%s or its variable %s", name, envName(name))
		}
	}
	man, err := exec.LookPath("man")
	if err != nil {
		t.Skip("no man to render the page with")
	}
	file := filepath.Join(t.TempDir(), "demo.1")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "--warnings", "-l", file)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=100")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "timeout-keep-alive") || strings.Contains(string(out), ": warning") {
		t.Errorf("man -l demo.1: %v\n%s", err, out)
	}
}
