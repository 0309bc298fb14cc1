package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"demo/childproc"
	"demo/contract"
)

// server is one server under test, started by the bench.
type server struct {
	name     string // for the table: "demo async ×1"
	kind     string // "demo", "baseline", "nginx", "fasthttp" or "uvicorn"
	proc     *childproc.Child
	url      string // http://127.0.0.1:PORT
	port     int
	children bool   // demo, nginx: the master's children are its workers
	control  string // demo: the master's control socket (per-worker request counts)

	kids map[int]uint64 // nginx: its workers seen so far, by pid, with their start times
}

// pids lists the processes whose CPU time is the server's: for demo and
// nginx the master and its workers, otherwise the one process.
func (s *server) pids() []int {
	pids := []int{s.proc.PID()}
	if s.children {
		pids = append(pids, childPids(s.proc.PID())...)
	}
	return pids
}

// workers lists demo's worker pids, whose connections the scaling scenario
// counts (none for the others).
func (s *server) workers() []int {
	if s.kind != "demo" {
		return nil
	}
	w := childPids(s.proc.PID())
	slices.Sort(w)
	return w
}

// noteWorkers records the master's children as they are now, with their
// start times, for stop: nginx's workers, unlike demo's, do not die with
// their master.
func (s *server) noteWorkers() {
	if s.kind != "nginx" {
		return
	}
	if s.kids == nil {
		s.kids = map[int]uint64{}
	}
	for _, pid := range childPids(s.proc.PID()) {
		if start, err := startTime(pid); err == nil {
			s.kids[pid] = start
		}
	}
}

// stop stops the server. A worker of nginx's still there once its master
// is gone (the master was killed) is killed too, and said to have been.
func (s *server) stop() error {
	s.noteWorkers()
	var err error
	select {
	case <-s.proc.Exited():
		// The master is gone already: a worker left behind holds its
		// output open, which Stop would wait for.
		err = s.killLeftovers()
	default:
	}
	return errors.Join(err, s.proc.Stop(10*time.Second), s.killLeftovers())
}

// killLeftovers kills the workers noted that outlived their master.
func (s *server) killLeftovers() error {
	var err error
	for pid, start := range s.kids {
		// The start time tells a leftover worker from a new process that
		// got its pid.
		if now, serr := startTime(pid); serr == nil && now == start {
			if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr == nil {
				err = errors.Join(err, fmt.Errorf("%s: worker %d outlived its master: killed", s.name, pid))
			}
		}
		delete(s.kids, pid)
	}
	return err
}

// lastLines quotes the end of a server's output, for an error message.
func (s *server) lastLines() string {
	if q := s.proc.Tail(); q != "" {
		return "; its last output:" + q
	}
	return ""
}

const startTimeout = 20 * time.Second

// The servers' readiness lines. demo's servers log to the console here, as
// users run them: the bench measures that format's cost, not JSON's.
var (
	serveRunning    = contract.RunningLine(contract.ServeName)
	baselineRunning = contract.RunningLine(contract.BaselineName)
	externalRunning = contract.RunningLine(contract.ExternalName)
	uvicornRunning  = regexp.MustCompile(`Uvicorn running on`)
)

// controlPath is a fresh control socket path for a demo serve the bench
// starts: in its scratch directory, so none is left behind.
func (r *runner) controlPath() string {
	r.servers++
	return filepath.Join(r.scratch, fmt.Sprintf("ctl-%d.sock", r.servers))
}

// startDemo runs `demo serve --port 0 args...`, waits until every worker is
// ready (the master says so with its `running on` line) and from then on
// drains its output: under load only a failure needs it.
func (r *runner) startDemo(ctx context.Context, name string, args ...string) (*server, error) {
	ctl := r.controlPath()
	argv := append([]string{"serve", "--port", "0", "--control", ctl}, args...)
	// Under load (the access log on) only a failure needs its output.
	p, m, err := startReady(ctx, childproc.Spec{Name: name, Path: r.cfg.Bin, Args: argv, DrainAfter: serveRunning}, serveRunning)
	if err != nil {
		return nil, err
	}
	s, err := newServer(name, "demo", p, m.Groups[1], true)
	if err != nil {
		return nil, err
	}
	s.control = ctl
	return s, nil
}

// startBaseline runs the hidden `demo baseline` command: net/http with
// GOMAXPROCS=1.
func startBaseline(ctx context.Context, bin string) (*server, error) {
	const name = "net/http GOMAXPROCS=1"
	p, m, err := startReady(ctx, childproc.Spec{Name: name, Path: bin, Args: []string{"baseline", "--port", "0"}, Env: []string{"GOMAXPROCS=1"}}, baselineRunning)
	if err != nil {
		return nil, err
	}
	return newServer(name, "baseline", p, m.Groups[1], false)
}

func newServer(name, kind string, p *childproc.Child, rawURL string, workers bool) (*server, error) {
	u, err := url.Parse(rawURL)
	if err == nil && u.Hostname() != "127.0.0.1" {
		err = fmt.Errorf("listens on %s, not 127.0.0.1", u.Host)
	}
	var port int
	if err == nil {
		port, err = strconv.Atoi(u.Port())
	}
	if err != nil {
		_ = p.Stop(time.Second)
		return nil, fmt.Errorf("%s: bad URL %q: %w", name, rawURL, err)
	}
	return &server{name: name, kind: kind, proc: p, url: rawURL, port: port, children: workers}, nil
}

// uvicornApp is the FastAPI app the bench runs under Uvicorn: the same
// /healthcheck as demo's worker.
const uvicornApp = `# written by demo bench
from fastapi import FastAPI

app = FastAPI()


@app.get("/healthcheck")
async def healthcheck():
    return {"status": "ok"}
`

// pythonFlavour is a Python that can run the Uvicorn baseline.
type pythonFlavour struct {
	python   string // interpreter path
	loop     string // "uvloop" or "asyncio"
	http     string // "httptools" or "h11"
	versions string // "uvicorn 0.17.6, fastapi 0.92.0, ..."
}

func (f pythonFlavour) name() string { return "uvicorn " + f.loop + "+" + f.http + " ×1" }

// findUvicorn looks for a Python that imports uvicorn and fastapi, trying
// candidates in order, and picks uvloop and httptools when importable. The
// second result says why none was found.
func findUvicorn(ctx context.Context, candidates []string) (pythonFlavour, string) {
	imports := func(py, mods string) bool {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, py, "-c", "import "+mods).Run() == nil
	}
	var tried []string
	for _, py := range candidates {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		tried = append(tried, path)
		if !imports(path, "uvicorn, fastapi") {
			continue
		}
		f := pythonFlavour{python: path, loop: "asyncio", http: "h11"}
		if imports(path, "uvloop") {
			f.loop = "uvloop"
		}
		if imports(path, "httptools") {
			f.http = "httptools"
		}
		f.versions = pythonVersions(ctx, path, "uvicorn", "fastapi", f.loop, f.http)
		return f, ""
	}
	if len(tried) == 0 {
		return pythonFlavour{}, "no python3 found"
	}
	return pythonFlavour{}, fmt.Sprintf("uvicorn/fastapi not importable by %v (apt-get install python3-uvicorn python3-fastapi python3-uvloop python3-httptools)", tried)
}

// pythonVersions lists the modules' versions ("uvicorn 0.17.6, ..."),
// leaving out the standard library's (asyncio) and any it cannot tell.
func pythonVersions(ctx context.Context, python string, modules ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	const script = `import importlib, sys
for m in sys.argv[1:]:
    v = getattr(importlib.import_module(m), "__version__", None)
    if v:
        print(m, v)
`
	out, err := exec.CommandContext(ctx, python, append([]string{"-c", script}, modules...)...).Output()
	if err != nil {
		return "uvicorn (versions unknown)"
	}
	return strings.Join(strings.Split(strings.TrimSpace(string(out)), "\n"), ", ")
}

// startUvicorn runs the FastAPI app under one Uvicorn process. The bench
// binds the socket and hands it over as fd 3 (`uvicorn --fd 3`), so the port
// is known without a race.
func startUvicorn(ctx context.Context, f pythonFlavour, scratch string) (*server, error) {
	if err := os.WriteFile(filepath.Join(scratch, "bench_app.py"), []byte(uvicornApp), 0o644); err != nil {
		return nil, fmt.Errorf("uvicorn app: %w", err)
	}
	ls, err := listenInherited()
	if err != nil {
		return nil, fmt.Errorf("uvicorn socket: %w", err)
	}
	defer ls.Close() // the child has its own copy once started
	name := f.name()
	p, _, err := startReady(ctx, childproc.Spec{
		Name: name, Path: f.python, Dir: scratch, ExtraFiles: []*os.File{ls.file},
		Args: []string{"-m", "uvicorn", "bench_app:app", "--fd", "3", "--no-access-log",
			"--loop", f.loop, "--http", f.http, "--log-level", "info"},
		Env: []string{"PYTHONDONTWRITEBYTECODE=1"},
	}, uvicornRunning)
	if err != nil {
		return nil, err
	}
	return newServer(name, "uvicorn", p, ls.url, false)
}

// startExternal runs `demo external` with the given delay.
func startExternal(ctx context.Context, bin string, delay time.Duration) (*childproc.Child, string, error) {
	p, m, err := startReady(ctx, childproc.Spec{Name: "demo external", Path: bin, Args: []string{"external", "--port", "0", "--delay", delay.String()}}, externalRunning)
	if err != nil {
		return nil, "", err
	}
	return p, m.Groups[1], nil
}

// startReady starts s and waits up to startTimeout for its line matching
// ready; a child that never gets there is stopped again.
func startReady(ctx context.Context, s childproc.Spec, ready *regexp.Regexp) (*childproc.Child, childproc.Match, error) {
	p, err := childproc.Start(s)
	if err != nil {
		return nil, childproc.Match{}, err
	}
	m, err := p.WaitLine(ctx, ready, 0, startTimeout)
	if err != nil {
		_ = p.Stop(time.Second)
		return nil, childproc.Match{}, err
	}
	return p, m, nil
}

// cpuSnapshot is the CPU time of a set of processes at one instant.
type cpuSnapshot map[int]time.Duration

func snapCPU(pids []int) cpuSnapshot {
	s := cpuSnapshot{}
	for _, pid := range pids {
		if d, err := cpuTime(pid); err == nil {
			s[pid] = d
		}
	}
	return s
}

// since is the CPU each process of s used since before, and the total. A
// process missing from before started in between and is charged all its
// CPU time; one missing from s has exited and its last window is lost.
func (s cpuSnapshot) since(before cpuSnapshot) (time.Duration, map[int]time.Duration) {
	per := map[int]time.Duration{}
	var total time.Duration
	for pid, d := range s {
		used := d - before[pid]
		per[pid] = used
		total += used
	}
	return total, per
}

// connShare counts, per worker, the established client connections it
// holds on the server's port: read from /proc, it costs the server nothing
// (unlike an access log) and counts what the kernel actually handed out.
func connShare(port int, workers []int) (map[int]int, error) {
	inodes, err := establishedOn(port)
	if err != nil {
		return nil, err
	}
	share := map[int]int{}
	for _, pid := range workers {
		owned := socketInodes(pid)
		for _, ino := range inodes {
			if owned[ino] {
				share[pid]++
			}
		}
	}
	if len(inodes) > 0 && len(share) == 0 {
		return share, errors.New("no worker holds the server's connections")
	}
	return share, nil
}
