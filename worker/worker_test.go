package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
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
	"demo/internal/testkit"
)

// These tests run real worker processes: the test binary re-executes itself
// with envHelperConfig set, and TestMain then calls Run with that Config. The
// test plays the master: it creates the listener and both pipes, pings the
// lifeline and reads the status pipe, exactly as the supervisor does.
const envHelperConfig = "DEMO_WORKER_TEST_CONFIG"

func TestMain(m *testing.M) {
	if spec := os.Getenv(envHelperConfig); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

// runHelper is the worker process's main.
func runHelper(spec string) int {
	var cfg Config
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return 2
	}
	enc := zap.NewDevelopmentEncoderConfig()
	cfg.Logger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zap.DebugLevel))
	err := Run(cfg)
	var startup *StartupError
	switch {
	case errors.As(err, &startup):
		fmt.Fprintln(os.Stderr, err)
		return contract.ExitStartupFailure
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// baseConfig is a worker with nothing slow in it.
func baseConfig() Config {
	cfg := DefaultConfig()
	cfg.Mode, cfg.External, cfg.Calls = Async, "http://127.0.0.1:1", 1
	cfg.ExternalTimeout, cfg.ThreadpoolSize = 10*time.Second, 4
	return cfg
}

type timedMsg struct {
	contract.Msg
	at time.Time // when the fake master read it
}

// fakeMaster is one worker process and the master's ends of its pipes.
type fakeMaster struct {
	t         *testing.T
	cmd       *exec.Cmd
	lifelineW *os.File
	msgs      chan timedMsg // closed at the status pipe's EOF
	stderr    syncBuffer
	exited    chan struct{}
	readGate  chan struct{} // the status reader starts once it is closed
	spareW    int           // -1, or a duplicate of the worker's status write end (see keepStatusW)

	stopPing chan struct{}
	wg       sync.WaitGroup
}

type workerOpts struct {
	listener *os.File // fd 3; nil leaves it closed (ReusePortAddr)
	// holdReading delays the status reader until readNow; keepStatusW keeps
	// a raw duplicate of the worker's status write end in spareW, so the
	// test can fill the pipe.
	holdReading, keepStatusW bool
}

// startWorker starts a worker process; everything is stopped and waited for
// when the test ends.
func startWorker(t *testing.T, cfg Config, o workerOpts) *fakeMaster {
	t.Helper()
	spec, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	lifelineR, lifelineW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMaster{
		t: t, lifelineW: lifelineW, msgs: make(chan timedMsg, 4096),
		exited: make(chan struct{}), readGate: make(chan struct{}), stopPing: make(chan struct{}), spareW: -1,
	}
	if o.keepStatusW {
		if m.spareW, err = unix.Dup(int(statusW.Fd())); err != nil {
			t.Fatal(err)
		}
		unix.CloseOnExec(m.spareW)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(self, "-test.run=^$")
	m.cmd.Env = append(os.Environ(), envHelperConfig+"="+string(spec), contract.EnvMasterPID+"="+strconv.Itoa(os.Getpid()))
	m.cmd.ExtraFiles = []*os.File{o.listener, statusW, lifelineR}
	m.cmd.Stderr = &m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	statusW.Close()
	lifelineR.Close()
	if !o.holdReading {
		close(m.readGate)
	}

	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	go func() {
		defer m.wg.Done()
		defer close(m.msgs)
		defer statusR.Close()
		select {
		case <-m.readGate:
		case <-m.exited:
			return
		}
		r := contract.NewReader(statusR)
		for {
			msg, err := r.Next()
			if err != nil {
				return
			}
			m.msgs <- timedMsg{msg, time.Now()}
		}
	}()
	go func() { // the master's pings, every HeartbeatInterval
		defer m.wg.Done()
		tick := time.NewTicker(contract.HeartbeatInterval)
		defer tick.Stop()
		for {
			select {
			case <-m.stopPing:
				return
			case <-tick.C:
			}
			if _, err := m.lifelineW.Write([]byte{contract.Ping}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(m.stopPing)
		_ = m.cmd.Process.Kill()
		<-m.exited
		if m.spareW >= 0 {
			unix.Close(m.spareW)
		}
		m.lifelineW.Close()
		m.readNow()
		m.wg.Wait()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", m.stderr.String())
		}
	})
	return m
}

// readNow lets a held status reader start.
func (m *fakeMaster) readNow() {
	select {
	case <-m.readGate:
	default:
		close(m.readGate)
	}
}

// until reads status messages until one satisfies match, and returns every
// message read, the matching one last.
func (m *fakeMaster) until(what string, within time.Duration, match func(timedMsg) bool) []timedMsg {
	m.t.Helper()
	var got []timedMsg
	deadline := time.After(within)
	for {
		select {
		case msg, ok := <-m.msgs:
			if !ok {
				m.t.Fatalf("status pipe closed before %s (worker exited: %v)", what, m.cmd.ProcessState)
			}
			got = append(got, msg)
			if match(msg) {
				return got
			}
		case <-deadline:
			m.t.Fatalf("no %s within %v; got %v", what, within, kinds(got))
		}
	}
}

func (m *fakeMaster) waitKind(k contract.Kind, within time.Duration) []timedMsg {
	m.t.Helper()
	return m.until(string(k), within, func(msg timedMsg) bool { return msg.Kind == k })
}

// beatAfter waits for a Beat the loop sent after t.
func (m *fakeMaster) beatAfter(t time.Time, within time.Duration) []timedMsg {
	m.t.Helper()
	return m.until("beat after "+t.Format(time.StampMilli), within, func(msg timedMsg) bool {
		return msg.Kind == contract.Beat && msg.Value > t.UnixNano()
	})
}

// waitLog polls the worker's stderr for s.
func (m *fakeMaster) waitLog(s string, within time.Duration) {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(m.stderr.String(), s) {
		if time.Now().After(deadline) {
			m.t.Fatalf("worker did not log %q within %v", s, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *fakeMaster) wait(within time.Duration) int {
	m.t.Helper()
	select {
	case <-m.exited:
	case <-time.After(within):
		m.t.Fatalf("worker still running after %v", within)
	}
	return m.cmd.ProcessState.ExitCode()
}

func kinds(msgs []timedMsg) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%s ", m.Kind)
	}
	return b.String()
}

func count(msgs []timedMsg, k contract.Kind) int {
	n := 0
	for _, m := range msgs {
		if m.Kind == k {
			n++
		}
	}
	return n
}

// syncBuffer is a bytes.Buffer the child's stderr copier and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tcpListener returns a listening socket on 127.0.0.1:0 to pass as fd 3, and
// its URL.
func tcpListener(t *testing.T) (*os.File, string) {
	f, addr := testkit.ListenerFile(t)
	return f, "http://" + addr.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestBeatsStopWhileLoopBlockedButAliveAnswers is the heart of issue 3's
// health model: in mixed mode a request blocks the loop; its Beats stop for
// exactly that long while the goroutine beside the loop keeps answering
// pings, and Beats resume once the loop is free.
func TestBeatsStopWhileLoopBlockedButAliveAnswers(t *testing.T) {
	arrived := make(chan time.Time, 1)
	release := make(chan struct{})
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- time.Now()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "{}")
	}))
	defer ext.Close()
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var client sync.WaitGroup
	defer client.Wait()
	defer unblock() // first: the client and ext.Close wait for the handler

	ln, url := tcpListener(t)
	cfg := baseConfig()
	cfg.Mode, cfg.External = Mixed, ext.URL
	m := startWorker(t, cfg, workerOpts{listener: ln})
	m.waitKind(contract.Ready, 10*time.Second)
	m.waitKind(contract.Beat, 2*time.Second)

	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	client.Add(1)
	go func() {
		defer client.Done()
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url + "/")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode}
	}()
	var blockedAt time.Time
	select {
	case blockedAt = <-arrived: // the loop is inside the blocking call now
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the external API")
	}

	// Three answered pings span at least 1 s (two intervals) of blocking.
	var during []timedMsg
	for n := 0; n < 3; {
		during = append(during, m.waitKind(contract.Alive, 3*time.Second)...)
		n = count(during, contract.Alive)
	}
	for _, msg := range during {
		if msg.Kind == contract.Beat && msg.Value > blockedAt.UnixNano() {
			t.Fatalf("a Beat sent at %v, while the loop was blocked since %v", time.Unix(0, msg.Value), blockedAt)
		}
	}
	stalled := time.Since(blockedAt)
	if stalled < contract.HeartbeatInterval {
		t.Fatalf("3 pings answered within %v of blocking", stalled)
	}
	// Each Alive carries the loop's counters as it published them when it
	// dispatched the request that blocks it: that request is in flight.
	last := during[len(during)-1]
	var live contract.LoopStats
	if err := json.Unmarshal([]byte(last.Text), &live); err != nil || live.Requests != 1 || live.InFlight != 1 || live.Conns != 1 || live.Seq == 0 {
		t.Errorf("Alive while blocked carries %q (%v), want 1 request, 1 in flight, 1 connection", last.Text, err)
	}

	releasedAt := time.Now()
	unblock()
	after := m.beatAfter(releasedAt, 3*time.Second)
	t.Logf("loop blocked %v: %d Alive answers, no Beat; first Beat %v after release",
		stalled.Round(time.Millisecond), count(during, contract.Alive), after[len(after)-1].at.Sub(releasedAt).Round(time.Millisecond))
	if a := <-answered; a.err != nil || a.status != 200 {
		t.Fatalf("the blocking request: %d %v", a.status, a.err)
	}
}

// TestAbortSendsTheLoopStack: SIGABRT, which the master sends a worker
// whose loop is stuck past --timeout, gets the loop goroutine's stack on
// the status pipe — trimmed to the blocking call — instead of the Go
// runtime's dump of every goroutine on stderr; then the worker is gone.
func TestAbortSendsTheLoopStack(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ext.Close()
	defer close(release)

	ln, url := tcpListener(t)
	cfg := baseConfig()
	cfg.Mode, cfg.External = Mixed, ext.URL
	m := startWorker(t, cfg, workerOpts{listener: ln})
	m.waitKind(contract.Ready, 10*time.Second)
	go func() {
		if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the external API")
	}
	if err := m.cmd.Process.Signal(syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	msgs := m.waitKind(contract.Stack, 5*time.Second)
	var report contract.AbortReport
	if err := json.Unmarshal([]byte(msgs[len(msgs)-1].Text), &report); err != nil {
		t.Fatalf("stack message %q: %v", msgs[len(msgs)-1].Text, err)
	}
	if !strings.HasPrefix(report.Label, "GET / (request ") {
		t.Errorf("the aborted worker says its loop ran %q, want GET / and its request", report.Label)
	}
	stack := report.Stack
	lines := strings.Split(stack, "\n")
	if !strings.HasPrefix(lines[0], "goroutine ") || len(lines) > 2*abortFrames+4 {
		t.Errorf("stack of %d lines, want the loop goroutine's, trimmed:\n%s", len(lines), stack)
	}
	for _, want := range []string{"net/http.(*Client).Do", "demo/worker.(*app).mixed", "the event loop and what started it"} {
		if !strings.Contains(stack, want) {
			t.Errorf("stack does not name %s:\n%s", want, stack)
		}
	}
	m.wait(5 * time.Second)
	if ws := m.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("worker ended with %v, want killed by SIGKILL", m.cmd.ProcessState)
	}
	if strings.Contains(m.stderr.String(), "goroutine ") {
		t.Errorf("stacks on stderr:\n%s", m.stderr.String())
	}
}

// TestRetireAfterMaxRequests checks --limit-max-requests on the worker's
// side: exactly one Retire, sent at the Nth request, and serving goes on
// normally until SIGTERM.
func TestRetireAfterMaxRequests(t *testing.T) {
	ln, url := tcpListener(t)
	cfg := baseConfig()
	cfg.MaxRequests = 3
	m := startWorker(t, cfg, workerOpts{listener: ln})
	m.waitKind(contract.Ready, 10*time.Second)

	// The pipe is ordered: a Beat sent after a request was served follows
	// any Retire that request caused.
	noRetireYet := func(after time.Time) {
		t.Helper()
		if got := m.beatAfter(after, 3*time.Second); count(got, contract.Retire) != 0 {
			t.Fatalf("Retire before the limit: %s", kinds(got))
		}
	}
	for range 2 {
		if status, _ := get(t, url+"/healthcheck"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	noRetireYet(time.Now())

	sent := time.Now()
	if status, _ := get(t, url+"/healthcheck"); status != 200 {
		t.Fatalf("status %d", status)
	}
	got := m.waitKind(contract.Retire, 3*time.Second)
	if r := got[len(got)-1]; r.Value != 3 {
		t.Fatalf("Retire value %d, want 3 requests served", r.Value)
	}
	t.Logf("Retire arrived %v after the 3rd request was sent", got[len(got)-1].at.Sub(sent).Round(time.Microsecond))

	// Past the limit the worker serves on, and asks only once.
	for range 3 {
		if status, _ := get(t, url+"/healthcheck"); status != 200 {
			t.Fatalf("status %d past the limit", status)
		}
	}
	noRetireYet(time.Now())
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := m.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// TestStatusPipeFullDoesNotStallTheLoop fills the status pipe as a master
// that stopped reading would: the worker keeps serving (beats and answers
// are dropped, never waited for), and once the master reads again the beats
// resume and the Retire that could not be sent arrives after all.
func TestStatusPipeFullDoesNotStallTheLoop(t *testing.T) {
	ln, url := tcpListener(t)
	cfg := baseConfig()
	cfg.MaxRequests = 2
	m := startWorker(t, cfg, workerOpts{listener: ln, holdReading: true, keepStatusW: true})
	// The worker makes the pipe non-blocking before it says Ready, so once
	// its Ready is in the pipe our duplicate write end (the same open file
	// description) is non-blocking too.
	for {
		n, err := unix.IoctlGetInt(m.spareW, unix.TIOCINQ) // FIONREAD
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case <-m.exited:
			t.Fatal("worker exited before Ready")
		case <-time.After(5 * time.Millisecond):
		}
	}
	flags, err := unix.FcntlInt(uintptr(m.spareW), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatal("the status pipe is blocking: a master that stops reading would stall the loop")
	}
	// Fill the pipe with well-formed lines until the kernel says full.
	filler := contract.Msg{Kind: "filler", Value: 0}.Encode()
	for {
		_, err := unix.Write(m.spareW, filler)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	for range 10 { // past the limit: the Retire finds no room
		if status, _ := get(t, url+"/healthcheck"); status != 200 {
			t.Fatalf("status %d with the status pipe full", status)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("10 requests took %v with the status pipe full", el)
	}
	// Two pings unanswered for want of room, and the loop went on.
	time.Sleep(2 * contract.HeartbeatInterval) // let beats and pings meet the full pipe
	if status, _ := get(t, url+"/healthcheck"); status != 200 {
		t.Fatalf("status %d after the pipe stayed full", status)
	}

	m.readNow()
	got := m.until("the Retire", 5*time.Second, func(msg timedMsg) bool { return msg.Kind == contract.Retire })
	if r := got[len(got)-1]; r.Value < 2 {
		t.Fatalf("Retire value %d, want at least the limit 2", r.Value)
	}
	m.beatAfter(time.Now(), 3*time.Second)
}

// reservePort binds 127.0.0.1:0 with SO_REUSEPORT without listening, as the
// master does for --reuse-port, and returns the concrete address.
func reservePort(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
}

// TestReusePortWorkers runs two workers that each bind the same port with
// SO_REUSEPORT (fd 3 closed): the kernel spreads connections over both, and
// a draining worker closes its socket at once, so while it finishes its own
// connection every new one goes to the other worker instead of waiting in a
// queue nobody accepts from.
func TestReusePortWorkers(t *testing.T) {
	addr := reservePort(t)
	url := "http://" + addr
	cfg := baseConfig()
	cfg.ReusePortAddr, cfg.Backlog = addr, 64
	cfg.KeepAliveTimeout = 10 * time.Second // a draining worker waits this long for a silent connection
	a := startWorker(t, cfg, workerOpts{})
	a.waitKind(contract.Ready, 10*time.Second)
	// A connection that sends nothing: only a can take it, and it keeps a
	// alive while draining.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	cfg.Index, cfg.Total = 2, 2
	b := startWorker(t, cfg, workerOpts{})
	b.waitKind(contract.Ready, 10*time.Second)

	const n = 40
	for range n {
		if status, _ := get(t, url+"/healthcheck"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	servedBy := func(m *fakeMaster) int { return strings.Count(m.stderr.String(), `"GET /healthcheck HTTP/1.1" 200`) }
	deadline := time.Now().Add(3 * time.Second)
	for servedBy(a)+servedBy(b) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the access log line follows the response
	}
	na, nb := servedBy(a), servedBy(b)
	t.Logf("%d connections: worker a served %d, worker b %d", n, na, nb)
	if na == 0 || nb == 0 || na+nb != n {
		t.Fatalf("served %d and %d of %d: both sockets should get connections", na, nb, n)
	}

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a.waitLog("Shutting down", 5*time.Second)
	start := time.Now()
	for range n {
		if status, _ := get(t, url+"/healthcheck"); status != 200 {
			t.Fatalf("status %d while a drains", status)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("%d requests took %v while a drained: some waited in a's queue", n, el)
	}
	select {
	case <-a.exited:
		t.Fatal("a exited although its silent connection was open")
	default:
	}
	silent.Close()
	if code := a.wait(5 * time.Second); code != 0 {
		t.Fatalf("a exit code %d", code)
	}
	if got := servedBy(b); got < nb+n {
		t.Fatalf("b served %d, want all %d requests sent while a drained", got-nb, n)
	}
}

// TestUnixSocketListener serves on a unix socket passed as fd 3 (--uds).
func TestUnixSocketListener(t *testing.T) {
	path := t.TempDir() + "/demo.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false) // the worker's duplicate still serves there
	f, err := l.(*net.UnixListener).File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := startWorker(t, baseConfig(), workerOpts{listener: f})
	m.waitKind(contract.Ready, 10*time.Second)

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://demo/healthcheck")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"status":"ok"}` {
		t.Fatalf("over the unix socket: %d %q", resp.StatusCode, body)
	}
	m.waitLog(`unix - "GET /healthcheck HTTP/1.1" 200`, 3*time.Second)
}

// TestStartupFailureExits3 covers sockets a worker cannot serve on: it must
// exit with contract.ExitStartupFailure so the master stops respawning it.
func TestStartupFailureExits3(t *testing.T) {
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeR.Close()
	defer pipeW.Close()
	busy, err := net.Listen("tcp", "127.0.0.1:0") // no SO_REUSEPORT: nobody may join
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpFile, err := udp.(*net.UDPConn).File()
	udp.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer udpFile.Close()

	ln, _ := tcpListener(t)
	badApp := filepath.Join(t.TempDir(), "app.toml")
	if err := os.WriteFile(badApp, []byte("[routes.\"/x\"]\ndef = \"sync\"\nsteps = [{ sleep = \"1s\" }]\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		listener *os.File
		reuse    string
		app      string
		want     string
	}{
		{"fd 3 is a pipe", pipeR, "", "", "not a listening socket"},
		{"fd 3 is a UDP socket", udpFile, "", "", "not a listening socket"},
		{"fd 3 is closed", nil, "", "", "not a listening socket"},
		{"reuse-port on a port held without it", nil, busy.Addr().String(), "", "address already in use"},
		{"a broken app file", ln, "", badApp, badApp + ":3:10: 'await' outside async function: routes./x steps[1]"},
		{"no app file", ln, "", badApp + ".gone", badApp + ".gone: cannot read: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.ReusePortAddr, cfg.Backlog, cfg.AppFile = tc.reuse, 16, tc.app
			m := startWorker(t, cfg, workerOpts{listener: tc.listener})
			if code := m.wait(10 * time.Second); code != contract.ExitStartupFailure {
				t.Fatalf("exit code %d, want %d", code, contract.ExitStartupFailure)
			}
			if out := m.stderr.String(); !strings.Contains(out, tc.want) {
				t.Fatalf("stderr %q does not say %q", out, tc.want)
			}
		})
	}
}
