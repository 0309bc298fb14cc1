package bench

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseNginxV(t *testing.T) {
	const v = `nginx version: nginx/1.22.1
built with OpenSSL 3.0.9 30 May 2023
TLS SNI support enabled
configure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --without-http_uwsgi_module --without-http_scgi_module --with-http_ssl_module`
	n, err := parseNginxV(v)
	if err != nil {
		t.Fatal(err)
	}
	if n.version != "1.22.1" || !n.errFlag {
		t.Errorf("version %q, -e %v; want 1.22.1 and true", n.version, n.errFlag)
	}
	if !n.without["http_uwsgi"] || !n.without["http_scgi"] || n.without["http_proxy"] || len(n.without) != 2 {
		t.Errorf("without %v, want http_uwsgi and http_scgi only", n.without)
	}
	for version, errFlag := range map[string]bool{"1.19.4": false, "1.19.5": true, "1.18.0": false, "1.20.0": true, "2.0.0": true} {
		n, err := parseNginxV("nginx version: nginx/" + version + "\n")
		if err != nil || n.errFlag != errFlag {
			t.Errorf("nginx %s: -e %v, %v; want %v", version, n.errFlag, err, errFlag)
		}
	}
	if _, err := parseNginxV("openresty/1.21"); err == nil {
		t.Error("no version line: want an error")
	}
}

func TestNginxConf(t *testing.T) {
	dir := t.TempDir()
	conf := nginxConf(nginxConfig{dir: dir, port: 41234, connections: 64, without: map[string]bool{"http_uwsgi": true}})
	for _, want := range []string{
		"worker_processes 1;", "master_process on;", "daemon off;", "error_log stderr notice;",
		`pid "` + filepath.Join(dir, "nginx.pid") + `";`,
		"access_log off;", "keepalive_requests 1000000000;", "server_tokens off;",
		"listen 127.0.0.1:41234;", "worker_connections 1024;",
		`client_body_temp_path "` + filepath.Join(dir, "client_body_temp") + `";`,
		`proxy_temp_path "` + filepath.Join(dir, "proxy_temp") + `";`,
		"location = /healthcheck {", `return 200 '{"status":"ok"}';`, "default_type application/json;",
		`return 404 '{"detail":"Not Found"}';`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	// A directive of a module built out would be an error.
	if strings.Contains(conf, "uwsgi_temp_path") {
		t.Errorf("config names uwsgi_temp_path, built out:\n%s", conf)
	}
	// Every path nginx writes to is inside dir.
	for l := range strings.Lines(conf) {
		if i := strings.Index(l, `"/`); i >= 0 && !strings.Contains(l, `"`+dir+"/") {
			t.Errorf("a path outside %s: %s", dir, l)
		}
	}

	logged := nginxConf(nginxConfig{dir: dir, port: 1, connections: 5000, accessLog: true})
	if !strings.Contains(logged, "access_log /dev/stderr combined buffer=64k flush=50ms;") || strings.Contains(logged, "access_log off") {
		t.Errorf("access log on: %s", logged)
	}
	if !strings.Contains(logged, "worker_connections 10064;") {
		t.Errorf("5,000 connections need more than 1,024 worker connections:\n%s", logged)
	}
}

// nginx itself accepts the generated config, when it is installed.
func TestNginxAcceptsTheConfig(t *testing.T) {
	n, why := findNginx(context.Background(), []string{"nginx", "/usr/sbin/nginx"})
	if why != "" {
		t.Skip("nginx: " + why)
	}
	dir := t.TempDir()
	for _, logged := range []bool{false, true} {
		conf := filepath.Join(dir, "nginx.conf")
		text := nginxConf(nginxConfig{dir: dir, port: 1, connections: 64, accessLog: logged, without: n.without})
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-t", "-q", "-p", dir, "-c", conf}
		if n.errFlag {
			args = append(args, "-e", "stderr")
		}
		if out, err := exec.Command(n.path, args...).CombinedOutput(); err != nil {
			t.Errorf("nginx -t (access log %v): %v\n%s\n%s", logged, err, out, text)
		}
	}
}

func TestFindNginxSaysWhyNot(t *testing.T) {
	_, why := findNginx(context.Background(), []string{"/nonexistent/nginx", "no-such-nginx-here"})
	if !strings.HasPrefix(why, "not installed: no /nonexistent/nginx or no-such-nginx-here") || !strings.Contains(why, "apt-get install nginx") {
		t.Errorf("why %q", why)
	}
	// Something that runs but is no nginx.
	_, why = findNginx(context.Background(), []string{"true"})
	if !strings.Contains(why, "no 'nginx version") {
		t.Errorf("why %q, want the version line missing", why)
	}
}

// The nginx peer for real: it answers like demo, its CPU is the master's
// and the worker's, and no worker outlives a master that was killed.
func TestNginxPeerStartsAnswersAndLeavesNothing(t *testing.T) {
	n, why := findNginx(context.Background(), []string{"nginx", "/usr/sbin/nginx"})
	if why != "" {
		t.Skip("nginx: " + why)
	}
	ctx := context.Background()
	s, err := startNginx(ctx, n, t.TempDir(), nginxName, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop() //nolint:errcheck // a failed test must not leave it running
	pids := s.pids()
	if len(pids) != 2 || len(s.kids) != 1 {
		t.Fatalf("pids %v, workers %v; want the master and one worker", pids, s.kids)
	}
	size, err := responseBytes(ctx, s.url)
	if err != nil || size < 100 || size > 250 {
		t.Errorf("response of %d bytes, %v", size, err)
	}

	// A master killed outright leaves its worker serving: stop kills it.
	var worker int
	for pid := range s.kids {
		worker = pid
	}
	if err := syscall.Kill(s.proc.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.proc.Exited()
	if _, err := startTime(worker); err != nil {
		t.Fatalf("the worker went with its master (%v): nginx changed; stop's cleanup is untested", err)
	}
	if err := s.stop(); err == nil || !strings.Contains(err.Error(), "outlived its master: killed") {
		t.Errorf("stop: %v; want the leftover worker reported", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := startTime(worker); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d still running 5s after stop", worker)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseStatStart(t *testing.T) {
	const stat = "4242 (nginx: worker) S 4241 4241 4241 0 -1 4194624 139 0 0 0 12 3 0 0 20 0 1 0 987654 123 45"
	if got, err := parseStatStart(stat); err != nil || got != 987654 {
		t.Errorf("start %d, %v; want 987654", got, err)
	}
	if _, err := parseStatStart(strings.Replace(stat, ") S ", ") Z ", 1)); err == nil {
		t.Error("a zombie: want an error")
	}
}

func writeFasthttpSource(t *testing.T, dir string) {
	t.Helper()
	for _, f := range fasthttpSources {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("// "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindFasthttpSource(t *testing.T) {
	empty := t.TempDir()
	if _, why := findFasthttpSource(empty, ""); !strings.Contains(why, "source not found: "+empty+" lacks one of go.mod, go.sum, main.go") {
		t.Errorf("why %q", why)
	}
	// Beside the binary, as after `go build -o demo .` in a checkout.
	checkout := t.TempDir()
	src := filepath.Join(checkout, FasthttpDir)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFasthttpSource(t, src)
	t.Chdir(empty)
	if got, why := findFasthttpSource("", filepath.Join(checkout, "demo")); got != src || why != "" {
		t.Errorf("found %q (%s), want %s", got, why, src)
	}
	if _, why := findFasthttpSource("", filepath.Join(empty, "demo")); !strings.Contains(why, "no bench/peers/fasthttp in the working directory or beside the demo binary") {
		t.Errorf("why %q", why)
	}
}

// fakeGo stands in for the go command behind the build seam.
type fakeGo struct {
	noGo     bool
	fail     string // go build's first line of output, when it fails
	builds   int
	versions string
}

func (f *fakeGo) builder() fasthttpBuild {
	return fasthttpBuild{run: func(_ context.Context, _ string, env []string, args ...string) ([]byte, error) {
		if f.noGo {
			return nil, errors.New("the go command is not on PATH")
		}
		switch args[0] {
		case "env":
			return []byte(f.versions + "\n"), nil
		case "build":
			f.builds++
			if f.fail != "" {
				return nil, errors.New(f.fail)
			}
			if !strings.Contains(strings.Join(env, " "), "GOWORK=off") {
				return nil, errors.New("built without GOWORK=off")
			}
			out := args[slicesIndex(args, "-o")+1]
			return nil, os.WriteFile(out, []byte("#!/bin/sh\n"), 0o755)
		}
		return nil, errors.New("unexpected go " + args[0])
	}}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestFasthttpBuildCachesAndSaysWhyNot(t *testing.T) {
	ctx := context.Background()
	src, cache, scratch := t.TempDir(), filepath.Join(t.TempDir(), "demo", "bench"), t.TempDir()
	writeFasthttpSource(t, src)

	g := &fakeGo{versions: "go1.26.8"}
	bin, err := g.builder().build(ctx, src, cache, scratch)
	if err != nil || filepath.Dir(bin) != cache || g.builds != 1 {
		t.Fatalf("first build: %s, %v, %d builds; want one, into the cache", bin, err, g.builds)
	}
	// The same sources and go: the cached binary, no build.
	again, err := g.builder().build(ctx, src, cache, scratch)
	if err != nil || again != bin || g.builds != 1 {
		t.Errorf("second build: %s, %v, %d builds; want the cached %s", again, err, g.builds, bin)
	}
	// An edited source, or another go: built anew.
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("// edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited, err := g.builder().build(ctx, src, cache, scratch)
	if err != nil || edited == bin || g.builds != 2 {
		t.Errorf("after an edit: %s, %v, %d builds; want a new build", edited, err, g.builds)
	}
	g.versions = "go1.27.0"
	other, _ := g.builder().build(ctx, src, cache, scratch)
	if other == edited || g.builds != 3 {
		t.Errorf("another go: %s, %d builds; want a new build", other, g.builds)
	}
	// The cache keeps the latest build only.
	if kept, _ := filepath.Glob(filepath.Join(cache, "*")); len(kept) != 1 || kept[0] != other {
		t.Errorf("cache holds %v, want only %s", kept, other)
	}
	// No cache directory, or one that cannot be written: the scratch one.
	if bin, err := g.builder().build(ctx, src, "", scratch); err != nil || filepath.Dir(bin) != scratch {
		t.Errorf("no cache: %s, %v; want a build into the scratch directory", bin, err)
	}
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if bin, err := g.builder().build(ctx, src, filepath.Join(notADir, "cache"), scratch); err != nil || filepath.Dir(bin) != scratch {
		t.Errorf("unusable cache: %s, %v; want a build into the scratch directory", bin, err)
	}
	// Nothing temporary is left beside the cached binaries.
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "fasthttp-peer-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}

	if _, err := (&fakeGo{noGo: true}).builder().build(ctx, src, cache, scratch); err == nil || err.Error() != "cannot build it: the go command is not on PATH" {
		t.Errorf("no go: %v", err)
	}
	const proxy = `main.go:26:2: github.com/valyala/fasthttp@v1.79.0: Get "https://proxy.example/...": dial tcp: lookup proxy.example: no such host`
	if _, err := (&fakeGo{versions: "go1.26.8", fail: proxy}).builder().build(ctx, src, t.TempDir(), scratch); err == nil || err.Error() != "build failed: "+proxy {
		t.Errorf("no module proxy: %v", err)
	}
}

// The peers a run cannot have are listed with the reason, and the targets
// against them are not measured — neither met nor missed.
func TestPeersThatCannotRunAreListedAndTheirTargetsNotMeasured(t *testing.T) {
	cfg := Config{
		Scenarios: []string{Throughput, Pipelined}, Pipeline: 16, Repeat: 1,
		Nginx: true, NginxBins: []string{"/nonexistent/nginx"},
		Fasthttp: true, FasthttpSrc: filepath.Join(t.TempDir(), "nowhere"),
		Uvicorn: false,
	}
	r := &runner{cfg: cfg, versions: map[string]string{}, wireBytes: map[string]int{}, log: func(string, ...any) {}}
	ts, err := r.peerTargets(context.Background())
	if err != nil || len(ts) != 0 {
		t.Fatalf("targets %v, %v; want none", ts, err)
	}
	want := map[string]string{
		"nginx":    "not installed: no /nonexistent/nginx (apt-get install nginx)",
		"fasthttp": "source not found: " + cfg.FasthttpSrc + " lacks one of go.mod, go.sum, main.go",
		"uvicorn":  "not asked for (--uvicorn=false)",
	}
	if len(r.missing) != len(want) {
		t.Errorf("missing %v, want %v", r.missing, want)
	}
	for _, m := range r.missing {
		if want[m.peer] != m.why {
			t.Errorf("%s: %q, want %q", m.peer, m.why, want[m.peer])
		}
	}

	// A run with demo and net/http only.
	row := func(scenario, server, kind string, perCPU ...float64) measurement {
		m := measurement{scenario: scenario, server: server, kind: kind, runs: len(perCPU)}
		for _, v := range perCPU {
			m.reps = append(m.reps, figures{perCPU: v})
		}
		m.fig = figures{perCPU: perCPU[0]}
		return m
	}
	r.rows = []measurement{
		row(keepAlive, "net/http GOMAXPROCS=1", "baseline", 60000),
		row(keepAlive, demoOne, "demo", 90000),
		row("pipelined ×16", "net/http GOMAXPROCS=1", "baseline", 60000),
		row("pipelined ×16", demoOne, "demo", 300000),
	}
	var out bytes.Buffer
	rep := r.render(&out)
	text := out.String()
	reportHas(t, text,
		"  nginx                  could not run: not installed: no /nonexistent/nginx (apt-get install nginx)",
		"  uvicorn                could not run: not asked for (--uvicorn=false)",
		"  –  keep-alive: demo ×1 ≥ 1.0× nginx (one worker process) requests per CPU-second  not measured: nginx (one worker process) did not run",
		"  –  pipelined: demo ×1 ≥ 0.8× fasthttp (GOMAXPROCS=1) requests per CPU-second",
		"; 3 not measured (a peer did not run)",
	)
	if len(rep.Unmeasured) != 3 || len(rep.Missed) != 1 { // p99: no latency in these rows
		t.Errorf("unmeasured %v, missed %v; want 3 and only the p99 target", rep.Unmeasured, rep.Missed)
	}
	if strings.Contains(text, "issue") {
		t.Errorf("the report names an issue:\n%s", text)
	}

	// With the peers measured: demo ÷ each, each round's own ratio.
	r.targets, r.missing = nil, nil
	r.rows = append(r.rows[:2:2],
		row(keepAlive, nginxName, "nginx", 100000, 50000, 120000),
		row(keepAlive, fasthttpName, "fasthttp", 75000),
		row("pipelined ×16", "net/http GOMAXPROCS=1", "baseline", 60000),
		row("pipelined ×16", demoOne, "demo", 300000),
		row("pipelined ×16", fasthttpName, "fasthttp", 400000))
	r.rows[1] = row(keepAlive, demoOne, "demo", 90000, 60000, 108000)
	r.rows[3] = row(keepAlive, fasthttpName, "fasthttp", 75000, 50000, 90000)
	r.rows[0] = row(keepAlive, "net/http GOMAXPROCS=1", "baseline", 60000, 40000, 72000)
	out.Reset()
	rep = r.render(&out)
	text = out.String()
	reportHas(t, text,
		"  scenario       net/http GOMAXPROCS=1  nginx ×1  fasthttp GOMAXPROCS=1",
		"  keep-alive                     1.50×     0.90×                  1.20×",
		"  pipelined ×16                  5.00×         -                  0.75×",
		"  ✗  keep-alive: demo ×1 ≥ 1.0× nginx (one worker process) requests per CPU-second  0.90×",
		"  ✓  keep-alive: demo ×1 ≥ 1.2× fasthttp (GOMAXPROCS=1) requests per CPU-second     1.20×",
		"  ✗  pipelined: demo ×1 ≥ 0.8× fasthttp (GOMAXPROCS=1) requests per CPU-second      0.75×",
	)
	if len(rep.Unmeasured) != 0 {
		t.Errorf("unmeasured %v, want none", rep.Unmeasured)
	}

	// With nginx in the costs rounds too, its keep-alive ratio is theirs:
	// the median of eight rounds' own ratios (nginx's CPU per request over
	// demo's), not the throughput rounds' 0.90×. fasthttp took part in too
	// few rounds for an interval: its ratio stays the throughput rounds'.
	r.targets = nil
	r.costs = &costResult{
		names: []string{demoOne, nginxName, fasthttpName}, rounds: 8, round: time.Second,
		perReq: map[string][]float64{
			demoOne:      {10, 10, 10, 10, 20, 20, 20, 20},
			nginxName:    {10.2, 10.4, 10.6, 10.8, 20, 22, 23, 24},
			fasthttpName: {13},
		},
		rate: map[string][]float64{demoOne: {1}, nginxName: {1}, fasthttpName: {1}},
	}
	out.Reset()
	r.render(&out)
	text = out.String()
	reportHas(t, text,
		"  keep-alive                     1.50×    1.07×*                  1.20×",
		"  * keep-alive: from the costs rounds, the median of 8 rounds' own ratios (demo async ×1 and the peer loaded in turn)",
		"    nginx ×1: 95% interval of the median 1.00× … 1.20×, middle half of the rounds 1.04× … 1.11×; the keep-alive rounds above alone: 0.90×",
		"  ✓  keep-alive: demo ×1 ≥ 1.0× nginx (one worker process) requests per CPU-second  1.07× (8 paired rounds, 95% interval 1.00× … 1.20×)",
		"  ✓  keep-alive: demo ×1 ≥ 1.2× fasthttp (GOMAXPROCS=1) requests per CPU-second     1.20×",
	)
}

// reportHas fails t for each of lines text lacks.
func reportHas(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, l) {
			t.Errorf("report lacks %q:\n%s", l, text)
		}
	}
}

// The fasthttp peer for real, when its modules can be had within a minute
// (the module proxy, or the module cache): built into an empty cache, it
// answers like demo with GOMAXPROCS=1.
func TestFasthttpPeerBuildsAndServes(t *testing.T) {
	src, why := findFasthttpSource(filepath.Join("peers", "fasthttp"), "")
	if why != "" {
		t.Fatal(why)
	}
	skipUnlessFasthttpModules(t, src)
	ctx := context.Background()
	bin, err := goBuilder().build(ctx, src, t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, version, err := startFasthttp(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop() //nolint:errcheck // a failed test must not leave it running
	if !strings.HasPrefix(version, "fasthttp v1.") || !strings.HasSuffix(version, ", GOMAXPROCS=1)") {
		t.Errorf("version %q", version)
	}
	if err := checkHealthy(ctx, &http.Client{}, s.url); err != nil {
		t.Error(err)
	}
	if size, err := responseBytes(ctx, s.url); err != nil || size < 100 || size > 250 {
		t.Errorf("response of %d bytes, %v", size, err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := s.proc.ExitErr(); err != nil {
		t.Errorf("exit on SIGTERM: %v", err)
	}
}

// skipUnlessFasthttpModules skips the test when the go command cannot get
// the peer's modules within a minute: no go command, no module proxy.
func skipUnlessFasthttpModules(t *testing.T, src string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH: the fasthttp peer cannot be built")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("the fasthttp peer's modules cannot be had (%v): %s", err, firstLine(string(out)))
	}
}

// An nginx that will not start: the one line the report gives it quotes
// what nginx said.
func TestNginxThatWillNotStartSaysWhy(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "nginx")
	script := "#!/bin/sh\n" +
		`if [ "$1" = -V ]; then echo "nginx version: nginx/1.22.1" >&2; exit 0; fi` + "\n" +
		`echo 'nginx: [emerg] unknown directive "keepalive_requests" in nginx.conf:12' >&2` + "\n" +
		"exit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n, why := findNginx(context.Background(), []string{fake})
	if why != "" {
		t.Fatal(why)
	}
	_, err := startNginx(context.Background(), n, dir, nginxName, 4, false)
	if err == nil {
		t.Fatal("started")
	}
	got := summary(err.Error())
	if !strings.HasPrefix(got, nginxName+": exit status 1") || !strings.HasSuffix(got, `… nginx: [emerg] unknown directive "keepalive_requests" in nginx.conf:12`) {
		t.Errorf("summary %q", got)
	}
}
