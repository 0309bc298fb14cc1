package supervisor

// The test binary plays every process, the os/exec way: TestMain looks at the
// environment and becomes a worker (started by a master, so it has
// contract.EnvMasterPID) or a master (DEMO_TEST_MASTER set by a test), and
// only otherwise runs the tests. Tests start a master process so that signals
// to the master are real signals to a real process.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"demo/contract"
)

const (
	envTestMaster    = "DEMO_TEST_MASTER"    // "1": this process is a master
	envTestWorkers   = "DEMO_TEST_WORKERS"   // number of workers
	envTestBehaviour = "DEMO_TEST_BEHAVIOUR" // per worker index, comma-separated; the last one repeats
	envTestGrace     = "DEMO_TEST_GRACE"     // GracefulTimeout
	envTestChurn     = "DEMO_TEST_CHURN"     // "1": kill OS threads while workers run
	testWorkerArgv0  = "demo-test-worker"
)

func TestMain(m *testing.M) {
	// Worker first: workers inherit the master's DEMO_TEST_MASTER too.
	if os.Getenv(contract.EnvMasterPID) != "" {
		os.Exit(testWorker(os.Args))
	}
	if os.Getenv(envTestMaster) != "" {
		os.Exit(testMaster())
	}
	os.Exit(m.Run())
}

// testMaster runs Run the way main would, logging with zap to stderr.
func testMaster() int {
	n, err := strconv.Atoi(os.Getenv(envTestWorkers))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test master:", err)
		return 2
	}
	behaviours := strings.Split(os.Getenv(envTestBehaviour), ",")
	grace, err := time.ParseDuration(os.Getenv(envTestGrace))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test master:", err)
		return 2
	}
	logCfg := zap.NewDevelopmentConfig()
	logCfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	logCfg.DisableStacktrace = true
	logger, err := logCfg.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test master:", err)
		return 2
	}
	ln, addr, err := Listen("127.0.0.1", 0, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test master:", err)
		return 1
	}
	if os.Getenv(envTestChurn) != "" {
		stop := make(chan struct{})
		done := make(chan struct{})
		defer func() { close(stop); <-done }()
		go churnThreads(logger, stop, done)
	}
	err = Run(Config{
		Listener:        ln,
		Addr:            "http://" + addr.String(),
		Workers:         n,
		GracefulTimeout: grace,
		// Executable left empty: os.Executable(), this test binary.
		WorkerArgs: func(index, total int) []string {
			b := behaviours[min(index, len(behaviours))-1]
			return []string{testWorkerArgv0, "worker", fmt.Sprintf("%d/%d", index, total), b}
		},
		Logger: logger,
	})
	_ = logger.Sync()
	if err != nil {
		fmt.Fprintln(os.Stderr, "master error:", err)
		return 1
	}
	return 0
}

// churnThreads makes the runtime tear down OS threads, as a goroutine that
// exits while locked to its thread does. Were a worker forked from one of
// those threads, Pdeathsig would kill it (golang/go#27505).
func churnThreads(logger *zap.Logger, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	const report = 300
	for i := 1; ; i++ {
		exited := make(chan struct{})
		go func() {
			defer close(exited)
			runtime.LockOSThread() // never unlocked: the thread dies with us
		}()
		<-exited
		if i == report {
			logger.Info(fmt.Sprintf("churned %d threads", report))
		}
		select {
		case <-stop:
			return
		default:
			runtime.Gosched()
		}
	}
}

// testWorker is a worker per contract.go, with misbehaviours on demand:
// argv is {argv0, "worker", "i/n", behaviour}.
func testWorker(args []string) int {
	// Before anything opens a file: which fds did we inherit?
	fmt.Fprintf(os.Stderr, "test-worker [%d] fds: %s\n", os.Getpid(), openFDs())
	if os.Getenv(contract.EnvMasterPID) != strconv.Itoa(os.Getppid()) {
		fmt.Fprintln(os.Stderr, "test-worker: not started by my master")
		return contract.ExitStartupFailure
	}
	if len(args) != 4 {
		fmt.Fprintf(os.Stderr, "test-worker: bad argv %q\n", args)
		return contract.ExitStartupFailure
	}
	behaviour := args[3]
	switch behaviour {
	case "exit1":
		return 1
	case "exit3":
		return contract.ExitStartupFailure
	}

	ln, err := net.FileListener(os.NewFile(contract.ListenerFD, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test-worker:", err)
		return contract.ExitStartupFailure
	}
	status := os.NewFile(contract.StatusFD, "status")
	lifeline := os.NewFile(contract.LifelineFD, "lifeline")

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, os.Getpid())
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		fmt.Fprintf(os.Stderr, "test-worker [%d] slow request started\n", os.Getpid())
		time.Sleep(d) // the workload, not a synchronisation
		fmt.Fprintf(w, "done %d", os.Getpid())
	})
	mux.HandleFunc("/exit", func(_ http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		os.Exit(code)
	})
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// Signal handling is in place before "ready": from then on the master
	// may send SIGTERM at any moment.
	sigs := make(chan os.Signal, 1)
	if behaviour == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	masterGone := make(chan struct{})
	if behaviour != "no-lifeline" {
		go func() {
			_, _ = io.Copy(io.Discard, lifeline)
			close(masterGone)
		}()
	}
	if _, err := status.Write(contract.Msg{Kind: contract.Ready}.Encode()); err != nil {
		fmt.Fprintln(os.Stderr, "test-worker:", err)
		return contract.ExitStartupFailure
	}
	if behaviour == "crash-after-ready" {
		return 1
	}
	select {
	case <-sigs:
		if err := srv.Shutdown(context.Background()); err != nil {
			return 1
		}
		fmt.Fprintf(os.Stderr, "test-worker [%d] drained\n", os.Getpid())
		return 0
	case <-masterGone:
		fmt.Fprintf(os.Stderr, "test-worker [%d] master gone\n", os.Getpid())
		return 0
	case err := <-served:
		fmt.Fprintln(os.Stderr, "test-worker:", err)
		return 1
	}
}

// openFDs lists the descriptors this process inherited across exec.
func openFDs() string {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err.Error()
	}
	self := strconv.Itoa(int(d.Fd()))
	var fds []int
	for _, n := range names {
		fd, _ := strconv.Atoi(n)
		// The runtime's own files (epoll, cgroup limits) are close-on-exec;
		// anything inherited across exec is not.
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); n != self && err == nil && flags&unix.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return strings.Trim(fmt.Sprint(fds), "[]")
}

// master is a running test master process and everything it (and its
// workers, which share its stderr) printed.
type master struct {
	t     *testing.T
	cmd   *exec.Cmd
	pid   int
	url   string // from the "running on" line, once seen
	start time.Time

	stderr   *os.File // read end of the master's (and workers') stderr
	scanDone chan struct{}
	mu       sync.Mutex
	lines    []string
	changed  chan struct{} // 1-buffered: a line was appended
	next     int           // waitFor's cursor into lines

	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error
	exitAt  time.Time
}

// startMaster starts a master with n workers; behaviours apply by worker
// index, the last one repeating.
func startMaster(t *testing.T, n int, grace time.Duration, behaviours ...string) *master {
	t.Helper()
	return startMasterEnv(t, nil, n, grace, behaviours...)
}

// startMasterEnv is startMaster with extra environment for the master.
func startMasterEnv(t *testing.T, env []string, n int, grace time.Duration, behaviours ...string) *master {
	t.Helper()
	if len(behaviours) == 0 {
		behaviours = []string{"ok"}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		envTestMaster+"=1",
		fmt.Sprintf("%s=%d", envTestWorkers, n),
		envTestBehaviour+"="+strings.Join(behaviours, ","),
		envTestGrace+"="+grace.String(),
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = w
	// Should this test process die, its master (and so the workers) goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m := &master{t: t, cmd: cmd, stderr: r, scanDone: make(chan struct{}), changed: make(chan struct{}, 1), exited: make(chan struct{})}
	m.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	m.pid = cmd.Process.Pid
	go m.scan()
	go func() {
		m.waitErr = cmd.Wait()
		m.exitAt = time.Now()
		close(m.exited)
	}()
	t.Cleanup(m.cleanup)
	return m
}

func (m *master) scan() {
	defer close(m.scanDone)
	sc := bufio.NewScanner(m.stderr)
	for sc.Scan() {
		m.mu.Lock()
		m.lines = append(m.lines, sc.Text())
		m.mu.Unlock()
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
}

func (m *master) cleanup() {
	select {
	case <-m.exited:
	default:
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	// EOF on stderr means no process holding it (master or worker) is left.
	select {
	case <-m.scanDone:
	case <-time.After(5 * time.Second):
		m.t.Errorf("stderr still open 5s after the master exited: a worker outlived it")
		// Do not leave the orphans behind for the next test run.
		for _, s := range m.all(`Started server process \[(\d+)\]`) {
			if pid, err := strconv.Atoi(s[1]); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		m.stderr.Close()
		<-m.scanDone
	}
	m.stderr.Close()
	if m.t.Failed() {
		m.mu.Lock()
		m.t.Logf("master output:\n%s", strings.Join(m.lines, "\n"))
		m.mu.Unlock()
	}
}

// waitFor returns the submatches of the first line after the previous match
// that matches re, failing the test after timeout.
func (m *master) waitFor(re string, timeout time.Duration) []string {
	m.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		for i := m.next; i < len(m.lines); i++ {
			if sub := rx.FindStringSubmatch(m.lines[i]); sub != nil {
				m.next = i + 1
				m.mu.Unlock()
				return sub
			}
		}
		m.mu.Unlock()
		select {
		case <-m.changed:
		case <-m.scanDone:
			// One last look: lines may have arrived with the EOF.
			m.mu.Lock()
			found := slices.ContainsFunc(m.lines[m.next:], rx.MatchString)
			m.mu.Unlock()
			if !found {
				m.t.Fatalf("output ended without a line matching %q", re)
			}
		case <-deadline.C:
			m.t.Fatalf("no line matching %q within %v", re, timeout)
		}
	}
}

// all returns the submatches of every line so far that matches re.
func (m *master) all(re string) [][]string {
	rx := regexp.MustCompile(re)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]string
	for _, l := range m.lines {
		if sub := rx.FindStringSubmatch(l); sub != nil {
			out = append(out, sub)
		}
	}
	return out
}

// waitRunning waits for the "running on" line and returns the worker pids
// started so far, by index.
func (m *master) waitRunning() map[int]int {
	m.t.Helper()
	sub := m.waitFor(`demo running on (http://127\.0\.0\.1:\d+) \(Press CTRL\+C to quit\)`, 10*time.Second)
	m.url = sub[1]
	pids := map[int]int{}
	for _, s := range m.all(`Started server process \[(\d+)\] \(worker (\d+)/\d+\)`) {
		pid, _ := strconv.Atoi(s[1])
		idx, _ := strconv.Atoi(s[2])
		pids[idx] = pid
	}
	return pids
}

func (m *master) signal(sig syscall.Signal) {
	m.t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		m.t.Fatalf("signal master: %v", err)
	}
}

// waitExit waits for the master to exit and returns its exit code.
func (m *master) waitExit(timeout time.Duration) int {
	m.t.Helper()
	select {
	case <-m.exited:
	case <-time.After(timeout):
		m.t.Fatalf("master still running after %v", timeout)
	}
	var ee *exec.ExitError
	if m.waitErr != nil && !errors.As(m.waitErr, &ee) {
		m.t.Fatalf("wait master: %v", m.waitErr)
	}
	return m.cmd.ProcessState.ExitCode()
}

// get fetches path on a fresh connection (keep-alive would pin one worker).
func get(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// waitGone waits (pidfd, no polling) until pid has exited. A zombie counts
// as gone: it runs no code and holds no socket.
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd %d: %v", pid, err)
		}
		if n == 0 {
			t.Errorf("process %d still alive after %v", pid, timeout)
		}
		return
	}
}

// procStat returns the state and parent pid of pid from /proc.
func procStat(pid int) (state string, ppid int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// comm may contain spaces; fields after its closing paren are fixed.
	rest := string(data[strings.LastIndexByte(string(data), ')')+1:])
	f := strings.Fields(rest)
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err
}
