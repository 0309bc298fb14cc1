package supervisor

// The test binary plays every process, the os/exec way: TestMain looks at the
// environment and becomes a worker (started by a master, so it has
// contract.EnvMasterPID) or a master (DEMO_TEST_MASTER set by a test), and
// only otherwise runs the tests. Tests start a master process so that signals
// to the master are real signals to a real process.

import (
	"bufio"
	"context"
	"encoding/json"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"demo/contract"
	"demo/sockets"
)

const (
	envTestMaster    = "DEMO_TEST_MASTER"    // "1": this process is a master
	envTestWorkers   = "DEMO_TEST_WORKERS"   // number of workers
	envTestBehaviour = "DEMO_TEST_BEHAVIOUR" // per worker index, comma-separated; the last one repeats
	envTestGrace     = "DEMO_TEST_GRACE"     // GracefulTimeout
	envTestChurn     = "DEMO_TEST_CHURN"     // "1": kill OS threads while workers run
	// DEMO_TEST_BEHAVIOUR_FILE: read behaviours from this file at every
	// spawn instead, so a test can "deploy" a broken version before SIGHUP.
	envTestBehaviourFile = "DEMO_TEST_BEHAVIOUR_FILE"
	envTestHealth        = "DEMO_TEST_HEALTHCHECK" // Config.HealthcheckTimeout
	envTestTimeout       = "DEMO_TEST_TIMEOUT"     // Config.Timeout
	envTestStallEvery    = "DEMO_TEST_STALL_EVERY" // stallProgressEvery
	envTestStartBatch    = "DEMO_TEST_START_BATCH" // startBatch
	envTestMaxWorkers    = "DEMO_TEST_MAX_WORKERS" // Config.MaxWorkers
	// DEMO_TEST_LISTEN: where the master's socket comes from, by package
	// sockets: "" (ListenTCP on 127.0.0.1:0), "fd:N" (ListenFD), "systemd"
	// (ListenSystemd), "unix:PATH" (ListenUnix) or "reuseport"
	// (ReservePort, no Listener).
	envTestListen = "DEMO_TEST_LISTEN"
	// DEMO_TEST_ACTIVATE=1: this process plays systemd's last step before
	// exec — it sets LISTEN_PID to its own pid and re-executes itself, so
	// the master that runs next has the pid the variable names.
	envTestActivate = "DEMO_TEST_ACTIVATE"
	testWorkerArgv0 = "demo-test-worker"
)

func TestMain(m *testing.M) {
	// Worker first: workers inherit the master's DEMO_TEST_MASTER too.
	if os.Getenv(contract.EnvMasterPID) != "" {
		os.Exit(testWorker(os.Args))
	}
	if os.Getenv(envTestActivate) != "" {
		os.Exit(activate())
	}
	if os.Getenv(envTestMaster) != "" {
		os.Exit(testMaster())
	}
	os.Exit(m.Run())
}

// activate replaces this process with a master whose LISTEN_PID is its own
// pid, the fds (from the test's ExtraFiles) staying open across exec.
func activate() int {
	env := []string{fmt.Sprintf("LISTEN_PID=%d", os.Getpid())}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envTestActivate+"=") && !strings.HasPrefix(kv, "LISTEN_PID=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(os.Args[0], os.Args, env)
	fmt.Fprintln(os.Stderr, "activate: exec:", err)
	return 2
}

// testMaster runs Run the way main would, logging with zap to stderr.
func testMaster() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "test master:", err)
		return 2
	}
	n, err := strconv.Atoi(os.Getenv(envTestWorkers))
	if err != nil {
		return fail(err)
	}
	durs := [4]time.Duration{DefaultGracefulTimeout, DefaultHealthcheckTimeout}
	for i, k := range []string{envTestGrace, envTestHealth, envTestTimeout, envTestStallEvery} {
		if v := os.Getenv(k); v != "" {
			if durs[i], err = time.ParseDuration(v); err != nil {
				return fail(err)
			}
		}
	}
	if durs[3] > 0 {
		stallProgressEvery = durs[3]
	}
	if v := os.Getenv(envTestStartBatch); v != "" {
		if startBatch, err = strconv.Atoi(v); err != nil {
			return fail(err)
		}
	}
	maxWorkers := 0
	if v := os.Getenv(envTestMaxWorkers); v != "" {
		if maxWorkers, err = strconv.Atoi(v); err != nil {
			return fail(err)
		}
	}
	logCfg := zap.NewDevelopmentConfig()
	logCfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	logCfg.DisableStacktrace = true
	logger, err := logCfg.Build()
	if err != nil {
		return fail(err)
	}
	cfg := Config{
		Workers:            n,
		MaxWorkers:         maxWorkers,
		GracefulTimeout:    durs[0],
		HealthcheckTimeout: durs[1],
		Timeout:            durs[2],
		Logger:             logger,
		Inspector:          NewInspector(),
		// Executable left empty: os.Executable(), this test binary.
	}
	var bindArg string // reuseport: where each worker binds
	switch src := os.Getenv(envTestListen); {
	case src == "":
		ln, addr, err := sockets.ListenTCP("127.0.0.1", 0, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "test master:", err)
			return 1
		}
		cfg.Listener, cfg.Addr = ln, "http://"+addr.String()
	case strings.HasPrefix(src, "fd:"):
		fd, _ := strconv.Atoi(strings.TrimPrefix(src, "fd:"))
		ln, err := sockets.ListenFD(fd)
		if err != nil {
			fmt.Fprintln(os.Stderr, "test master:", err)
			return 1
		}
		addr, err := sockets.Addr(ln)
		if err != nil {
			return fail(err)
		}
		cfg.Listener, cfg.Addr = ln, "http://"+addr.String()
	case src == "systemd":
		ln, name, err := sockets.ListenSystemd()
		if err != nil {
			fmt.Fprintln(os.Stderr, "test master:", err)
			return 1
		}
		logger.Info(fmt.Sprintf("socket activation: using %q", name))
		addr, err := sockets.Addr(ln)
		if err != nil {
			return fail(err)
		}
		cfg.Listener, cfg.Addr = ln, "http://"+addr.String()
	case strings.HasPrefix(src, "unix:"):
		path := strings.TrimPrefix(src, "unix:")
		ln, err := sockets.ListenUnix(path, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "test master:", err)
			return 1
		}
		cfg.Listener, cfg.UnixSocket, cfg.Addr = ln, path, "unix:"+path
	case src == "reuseport":
		res, addr, err := sockets.ReservePort("127.0.0.1", 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "test master:", err)
			return 1
		}
		defer res.Close()
		cfg.ReusePort, cfg.Addr, bindArg = true, "http://"+addr.String(), addr.String()
	default:
		return fail(fmt.Errorf("bad %s %q", envTestListen, src))
	}
	cfg.WorkerArgs = func(index, total int) []string {
		list := os.Getenv(envTestBehaviour)
		if path := os.Getenv(envTestBehaviourFile); path != "" {
			data, err := os.ReadFile(path)
			if err != nil {
				list = "bad-behaviour-file"
			} else {
				list = strings.TrimSpace(string(data))
			}
		}
		behaviours := strings.Split(list, ",")
		argv := []string{testWorkerArgv0, "worker", fmt.Sprintf("%d/%d", index, total), behaviours[min(index, len(behaviours))-1]}
		if bindArg != "" {
			argv = append(argv, bindArg)
		}
		return argv
	}
	if os.Getenv(envTestChurn) != "" {
		stop := make(chan struct{})
		done := make(chan struct{})
		defer func() { close(stop); <-done }()
		go churnThreads(logger, stop, done)
	}
	stopSnapshots := serveSnapshots(cfg.Inspector)
	err = Run(cfg)
	stopSnapshots()
	_ = logger.Sync()
	if err != nil {
		fmt.Fprintln(os.Stderr, "master error:", err)
		return 1
	}
	return 0
}

// serveSnapshots prints the worker table on stderr at every SIGUSR1, as
// "snapshot #Q ..." lines closed by "snapshot #Q end", until stop is called.
func serveSnapshots(in *Inspector) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for q := 1; ; q++ {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
			}
			snap, err := in.Snapshot(ctx)
			if err != nil {
				fmt.Fprintf(os.Stderr, "snapshot #%d error %v\n", q, err)
				continue
			}
			// One write per line: the workers write to the same pipe.
			for _, w := range snap.Workers {
				fmt.Fprintf(os.Stderr, "snapshot #%d worker=%d/%d pid=%d state=%s successor=%t stalled=%t since-beat=%v since-alive=%v stall=%v requests=%d in-flight=%d conns=%d\n",
					q, w.Index, w.Total, w.PID, w.State, w.Successor, w.Stalled, w.SinceBeat, w.SinceAlive, w.Stall, w.Loop.Requests, w.Loop.InFlight, w.Loop.Conns)
			}
			for _, sl := range snap.Slots {
				var restarts []string
				for _, c := range RestartCauses {
					restarts = append(restarts, fmt.Sprintf("%s:%d", c, sl.Restarts[c]))
				}
				fmt.Fprintf(os.Stderr, "snapshot #%d slot=%d wanted=%t requests=%d blocked=%v stalls=%d stall-sum=%v restarts=%s\n",
					q, sl.Index, sl.Wanted, sl.Requests, sl.Blocked, sl.Stalls.Count, sl.Stalls.Sum, strings.Join(restarts, ","))
			}
			fmt.Fprintf(os.Stderr, "snapshot #%d end\n", q)
		}
	}()
	return func() {
		signal.Stop(sigs)
		cancel()
		<-done
	}
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
// argv is {argv0, "worker", "i/n", behaviour[, bind address]}; behaviour is
// one or more of these, joined by "+":
//
//	ok                nothing special
//	exit1, exit3      exit with that code before ready
//	hang-boot         never get ready (but answer pings)
//	crash-after-ready exit 1 right after ready
//	ignore-term       ignore SIGTERM (only SIGKILL ends it)
//	ignore-abort      ignore SIGABRT (so --timeout must escalate to SIGKILL)
//	no-detector       /block says nothing of its stall (the real worker
//	                  with --slow-callback 0); by default it sends
//	                  contract.Stall as it blocks and StallEnd after
//	slow-boot=D       wait D before saying ready
//	no-lifeline       do not watch the lifeline: no Alive, no master-gone check
//	no-alive          read pings but never answer them
//	retire=N          send contract.Retire after N requests to /
//	print-env         print LISTEN_* variables it sees
//
// Paths: / (its pid), /block?d=D (blocks the loop), /slow?d=D (takes D
// beside the loop), /exit?code=N (exits), /die?sig=NAME (dies of a signal).
//
// Like a real worker, it has a "loop": the beat ticker, / and /block share
// one mutex, so /block?d=2s stops both serving / and beating for 2s, while
// the lifeline goroutine answers pings beside it, with the counters
// (requests, in flight, connections). Like the real one, it answers
// SIGABRT with a Stack message and kills itself.
func testWorker(args []string) int {
	// Before anything opens a file: which fds did we inherit?
	fmt.Fprintf(os.Stderr, "test-worker [%d] fds: %s\n", os.Getpid(), openFDs())
	if os.Getenv(contract.EnvMasterPID) != strconv.Itoa(os.Getppid()) {
		fmt.Fprintln(os.Stderr, "test-worker: not started by my master")
		return contract.ExitStartupFailure
	}
	if len(args) != 4 && len(args) != 5 {
		fmt.Fprintf(os.Stderr, "test-worker: bad argv %q\n", args)
		return contract.ExitStartupFailure
	}
	has := map[string]string{}
	for _, b := range strings.Split(args[3], "+") {
		k, v, _ := strings.Cut(b, "=")
		has[k] = v
	}
	is := func(k string) bool { _, ok := has[k]; return ok }
	switch {
	case is("exit1"):
		return 1
	case is("exit3"):
		return contract.ExitStartupFailure
	}
	if is("print-env") {
		fmt.Fprintf(os.Stderr, "test-worker [%d] env LISTEN_PID=%q LISTEN_FDS=%q LISTEN_FDNAMES=%q\n", os.Getpid(),
			os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"))
	}
	status := os.NewFile(contract.StatusFD, "status")
	send := func(k contract.Kind, v int64) {
		_, _ = status.Write(contract.Msg{Kind: k, Value: v}.Encode())
	}
	sendText := func(k contract.Kind, v int64, text string) {
		_, _ = status.Write(contract.Msg{Kind: k, Value: v, Text: text}.Encode())
	}
	if is("ignore-abort") {
		signal.Ignore(syscall.SIGABRT)
	} else {
		aborts := make(chan os.Signal, 1)
		signal.Notify(aborts, syscall.SIGABRT)
		go func() {
			<-aborts
			stack, _ := json.Marshal(contract.AbortReport{Label: "GET /block (request 1)", Stack: "goroutine 1 [sleep]:\ntime.Sleep\n\t/usr/local/go/src/runtime/time.go:300\ndemo/supervisor.testWorker.func2\n\t/work/supervisor/helper_test.go:1\n… 3 frames: the event loop and what started it"})
			sendText(contract.Stack, 0, string(stack))
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}()
	}

	var ln net.Listener
	var err error
	if len(args) == 5 {
		// --reuse-port: bind our own socket; fd 3 must not exist.
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			return errors.Join(err, serr)
		}}
		ln, err = lc.Listen(context.Background(), "tcp", args[4])
	} else {
		ln, err = net.FileListener(os.NewFile(contract.ListenerFD, "listener"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "test-worker:", err)
		return contract.ExitStartupFailure
	}
	lifeline := os.NewFile(contract.LifelineFD, "lifeline")

	var loop sync.Mutex // held by whatever "runs on the loop"
	var served, inFlight, open, seq atomic.Int64
	counts := func() string {
		b, _ := json.Marshal(contract.LoopStats{Requests: uint64(served.Load()), InFlight: int(inFlight.Load()), Conns: int(open.Load()), Seq: uint64(seq.Add(1))})
		return string(b)
	}
	retireAfter, _ := strconv.ParseInt(has["retire"], 10, 64)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		loop.Lock()
		defer loop.Unlock()
		fmt.Fprint(w, os.Getpid())
		if n := served.Add(1); n == retireAfter {
			send(contract.Retire, n)
		}
	})
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		loop.Lock()
		defer loop.Unlock()
		served.Add(1)
		inFlight.Add(1)
		defer inFlight.Add(-1)
		start := time.Now()
		if !is("no-detector") {
			sendText(contract.Stall, 0, "GET /block (request test) at supervisor.testWorker → time.Sleep")
		}
		fmt.Fprintf(os.Stderr, "test-worker [%d] loop blocked\n", os.Getpid())
		time.Sleep(d) // the blocking call under test, not a synchronisation
		if !is("no-detector") {
			sendText(contract.StallEnd, int64(time.Since(start)), "GET /block (request test)")
		}
		fmt.Fprintf(w, "unblocked %d", os.Getpid())
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
	mux.HandleFunc("/die", func(_ http.ResponseWriter, r *http.Request) {
		// Die of a signal no Go program dies of when sent one (the
		// runtime handles SIGSEGV, SIGBUS…): become a shell that sends it
		// to itself. Same pid, so for the master this worker crashed.
		// No core file: it would land in the test's directory.
		sig := r.URL.Query().Get("sig")
		err := syscall.Exec("/bin/sh", []string{"sh", "-c", "ulimit -c 0; kill -s " + sig + " $$"}, os.Environ())
		fmt.Fprintln(os.Stderr, "test-worker: exec sh:", err)
		os.Exit(1)
	})
	// Count connections, so draining can wait for the last one.
	var conns sync.WaitGroup
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			conns.Add(1)
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			conns.Done()
			open.Add(-1)
		}
	}}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	// Signal handling is in place before "ready": from then on the master
	// may send SIGTERM at any moment.
	sigs := make(chan os.Signal, 1)
	if is("ignore-term") {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	masterGone := make(chan struct{})
	if !is("no-lifeline") {
		go func() {
			defer close(masterGone)
			buf := make([]byte, 64)
			for {
				n, err := lifeline.Read(buf)
				for i := 0; i < n && !is("no-alive"); i++ {
					if buf[i] == contract.Ping {
						sendText(contract.Alive, time.Now().UnixNano(), counts())
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	if is("hang-boot") {
		fmt.Fprintf(os.Stderr, "test-worker [%d] hanging before ready\n", os.Getpid())
		select {
		case <-masterGone:
		case <-sigs:
		}
		return 1
	}
	if d, err := time.ParseDuration(has["slow-boot"]); err == nil {
		time.Sleep(d) // a worker that takes a while to boot, not a synchronisation
	}
	send(contract.Ready, 0)
	if is("crash-after-ready") {
		return 1
	}
	// The first beat before anything can take the loop, as the real worker
	// does: the master judges stalls only once it has heard one.
	send(contract.Beat, time.Now().UnixNano())
	stopBeats := make(chan struct{})
	beatsDone := make(chan struct{})
	go func() {
		defer close(beatsDone)
		t := time.NewTicker(contract.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-stopBeats:
				return
			case <-t.C:
			}
			loop.Lock()
			send(contract.Beat, time.Now().UnixNano())
			loop.Unlock()
		}
	}()
	defer func() { close(stopBeats); <-beatsDone }()
	select {
	case <-sigs:
		// Not srv.Shutdown: it drops the request of a connection accepted
		// just before it began, which a draining worker must answer.
		// Stop accepting; once Serve returned, every accepted connection
		// is counted. Idle keep-alive connections close now, busy ones
		// after their response (with "Connection: close").
		ln.Close()
		<-serveErr
		srv.SetKeepAlivesEnabled(false)
		conns.Wait()
		sendText(contract.Beat, time.Now().UnixNano(), counts()) // the final counts, as the real worker does
		fmt.Fprintf(os.Stderr, "test-worker [%d] drained\n", os.Getpid())
		return 0
	case <-masterGone:
		fmt.Fprintf(os.Stderr, "test-worker [%d] master gone\n", os.Getpid())
		return 0
	case err := <-serveErr:
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
	t     testing.TB
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

	lastQuery int // the last snapshot query's number
}

// startMaster starts a master with n workers; behaviours apply by worker
// index, the last one repeating.
func startMaster(t testing.TB, n int, grace time.Duration, behaviours ...string) *master {
	t.Helper()
	return startMasterEnv(t, nil, n, grace, behaviours...)
}

// startMasterEnv is startMaster with extra environment for the master.
func startMasterEnv(t testing.TB, env []string, n int, grace time.Duration, behaviours ...string) *master {
	t.Helper()
	return startMasterFiles(t, env, nil, n, grace, behaviours...)
}

// startMasterFiles is startMasterEnv with files the master inherits from
// fd 3 on.
func startMasterFiles(t testing.TB, env []string, files []*os.File, n int, grace time.Duration, behaviours ...string) *master {
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
	cmd.ExtraFiles = files
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
	return m.find(re, timeout, true)
}

// await is waitFor searching every line so far, without moving waitFor's
// cursor.
func (m *master) await(re string, timeout time.Duration) []string {
	m.t.Helper()
	return m.find(re, timeout, false)
}

func (m *master) find(re string, timeout time.Duration, advance bool) []string {
	m.t.Helper()
	from := 0
	if advance {
		from = m.next // only the test's goroutine moves it
	}
	sub, i := m.awaitFrom(from, re, timeout)
	if advance {
		m.next = i + 1
	}
	return sub
}

// awaitFrom returns the submatches of the first line from line number from
// on that matches re, and its line number, failing the test after timeout.
func (m *master) awaitFrom(from int, re string, timeout time.Duration) ([]string, int) {
	m.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		for i := from; i < len(m.lines); i++ {
			if sub := rx.FindStringSubmatch(m.lines[i]); sub != nil {
				m.mu.Unlock()
				return sub, i
			}
		}
		m.mu.Unlock()
		select {
		case <-m.changed:
		case <-m.scanDone:
			// One last look: lines may have arrived with the EOF.
			m.mu.Lock()
			found := slices.ContainsFunc(m.lines[min(from, len(m.lines)):], rx.MatchString)
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
	sub := m.waitFor(contract.RunningLine(contract.ServeName).String(), 10*time.Second)
	m.url = sub[1]
	pids := map[int]int{}
	for _, s := range m.all(contract.WorkerStartedLine("").String()) {
		pid, _ := strconv.Atoi(s[1])
		idx, _ := strconv.Atoi(strings.Split(s[2], "/")[0])
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

// stopCleanly sends SIGTERM and expects the master to drain and exit 0.
func (m *master) stopCleanly() {
	m.t.Helper()
	m.signal(syscall.SIGTERM)
	if code := m.waitExit(10 * time.Second); code != 0 {
		m.t.Errorf("master exit code %d, want 0", code)
	}
}

// workerRow is one line of the test master's snapshot dump.
type workerRow struct {
	index, total, pid          int
	state                      string
	successor, stalled         bool
	sinceBeat, sinceAlv, stall time.Duration
	requests, inFlight, conns  int
}

// slotRow is one slot line of the test master's snapshot dump.
type slotRow struct {
	index, requests, stalls int
	wanted                  bool
	blocked, stallSum       time.Duration
	restarts                map[string]int
}

// snapshot asks the master (SIGUSR1 → Inspector.Workers) for its worker table.
func (m *master) snapshot() []workerRow {
	m.t.Helper()
	m.mu.Lock()
	q := len(regexpAll(m.lines, `^snapshot #\d+ end$`)) + 1
	m.mu.Unlock()
	m.signal(syscall.SIGUSR1)
	m.await(fmt.Sprintf(`^snapshot #%d end$`, q), 5*time.Second)
	var out []workerRow
	for _, sub := range m.all(fmt.Sprintf(`^snapshot #%d worker=(\d+)/(\d+) pid=(\d+) state=(\S+) successor=(\S+) stalled=(\S+) since-beat=(\S+) since-alive=(\S+) stall=(\S+) requests=(\d+) in-flight=(\d+) conns=(\d+)$`, q)) {
		var ws workerRow
		ws.index, _ = strconv.Atoi(sub[1])
		ws.total, _ = strconv.Atoi(sub[2])
		ws.pid, _ = strconv.Atoi(sub[3])
		ws.state = sub[4]
		ws.successor = sub[5] == "true"
		ws.stalled = sub[6] == "true"
		ws.sinceBeat, _ = time.ParseDuration(sub[7])
		ws.sinceAlv, _ = time.ParseDuration(sub[8])
		ws.stall, _ = time.ParseDuration(sub[9])
		ws.requests, _ = strconv.Atoi(sub[10])
		ws.inFlight, _ = strconv.Atoi(sub[11])
		ws.conns, _ = strconv.Atoi(sub[12])
		out = append(out, ws)
	}
	m.lastQuery = q
	return out
}

// slots returns the slot lines of the last snapshot query.
func (m *master) slots() []slotRow {
	m.t.Helper()
	var out []slotRow
	for _, sub := range m.all(fmt.Sprintf(`^snapshot #%d slot=(\d+) wanted=(\S+) requests=(\d+) blocked=(\S+) stalls=(\d+) stall-sum=(\S+) restarts=(\S+)$`, m.lastQuery)) {
		st := slotRow{restarts: map[string]int{}}
		st.index, _ = strconv.Atoi(sub[1])
		st.wanted = sub[2] == "true"
		st.requests, _ = strconv.Atoi(sub[3])
		st.blocked, _ = time.ParseDuration(sub[4])
		st.stalls, _ = strconv.Atoi(sub[5])
		st.stallSum, _ = time.ParseDuration(sub[6])
		for _, kv := range strings.Split(sub[7], ",") {
			k, v, _ := strings.Cut(kv, ":")
			st.restarts[k], _ = strconv.Atoi(v)
		}
		out = append(out, st)
	}
	return out
}

func regexpAll(lines []string, re string) []string {
	rx := regexp.MustCompile(re)
	var out []string
	for _, l := range lines {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// count is how many lines so far match re.
func (m *master) count(re string) int {
	return len(m.all(re))
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
