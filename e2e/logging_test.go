package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/contract"
	"demo/control"
	"demo/internal/testkit"
)

// Logging must never stop a worker's loop or the master's signal handling,
// whatever the reader of stderr does: stops reading (`demo serve 2>&1 |
// less`, paused), goes away (`| head`), or is a terminal where background
// jobs may not write (`stty tostop`).

// pipedServe is `demo serve` with its stderr on a pipe the test reads, or
// not.
type pipedServe struct {
	cmd      *exec.Cmd
	r        *bufio.Reader // rf, buffered: lines after the "running on" one
	rf       *os.File      // the pipe's read end
	url, ctl string        // the server and its control socket
	exited   chan struct{} // closed once cmd.Wait returned
}

// stop sends SIGTERM and returns how long the master took to exit.
func (s *pipedServe) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the master within 10 s")
	}
	return time.Since(start)
}

// serveOnPipe starts `demo serve` with stderr on a pipe of one page, reads
// its lines until it runs, and hands back the pipe's read end unread from
// then on, with the server's URL and control socket.
func serveOnPipe(t *testing.T, args ...string) *pipedServe {
	t.Helper()
	rf, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rf.Close() })
	// One page: a reader that stops is felt after a few dozen lines.
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	cmd := exec.Command(demoBin, append([]string{"serve", "--port", "0", "--control", ctl}, args...)...)
	cmd.Stderr = w // the child's fd 2 is the pipe itself, not a copy by os/exec
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		go io.Copy(io.Discard, rf) // let whatever is stuck writing finish dying
		<-exited
	})
	s := &pipedServe{cmd: cmd, r: bufio.NewReader(rf), rf: rf, ctl: ctl, exited: exited}
	rf.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("no 'running on' line: %v", err)
		}
		if m := serveRunning.FindStringSubmatch(line); m != nil {
			s.url = m[1]
			break
		}
	}
	rf.SetReadDeadline(time.Time{})
	return s
}

// TestStalledLogReaderStopsNothing: with stderr never read, a worker keeps
// answering — 20,000 access lines are far more than it holds — and so do
// mixed-mode requests, whose handler syncs the log before each blocking
// call; `demo status` counts the dropped lines; SIGTERM stops the master
// promptly and cleanly. Before, the worker froze after ≈ 1 MiB of lines
// and the master ignored every signal.
func TestStalledLogReaderStopsNothing(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 0)
	s := serveOnPipe(t, "--mode", "mixed", "--calls", "1", "--external", ext)
	load := startLoad(t, s.url, 4, 0)
	load.waitServed(20000, time.Minute)
	load.finish()
	for range 20 {
		start := time.Now()
		if r := get(s.url + "/"); r.err != nil || r.status != 200 {
			t.Fatalf("mixed request with a stalled log reader: %d %v", r.status, r.err)
		} else if el := time.Since(start); el > 2*time.Second {
			t.Errorf("mixed request took %v: Sync waited for a stalled reader", el)
		}
	}
	snap := waitStatus(t, 5*time.Second, droppedLines, "--control", s.ctl)
	t.Logf("dropped: master %d, worker %d", snap.LogLinesDropped, snap.Workers[0].LogLinesDropped)
	if el := s.stop(t); el > 5*time.Second {
		t.Errorf("SIGTERM took %v to stop the master", el)
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestLogReaderThatComesBackHearsWhatWasDropped: once the reader reads
// again, each process says how many lines it dropped, and logs as before.
func TestLogReaderThatComesBackHearsWhatWasDropped(t *testing.T) {
	t.Parallel()
	s := serveOnPipe(t, "--mode", "async")
	load := startLoad(t, s.url, 4, 0)
	load.waitServed(20000, time.Minute)
	load.finish()
	snap := waitStatus(t, 5*time.Second, droppedLines, "--control", s.ctl)
	wpid := snap.Workers[0].PID
	report := regexp.MustCompile(fmt.Sprintf(`WARN worker-1\[%d\] dropped (\d+) log lines while stderr was not being read`, wpid))
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		for {
			l, err := s.r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- l
		}
	}()
	var reported uint64
	timeout := time.After(10 * time.Second)
	for reported == 0 {
		select {
		case l := <-lines:
			if m := report.FindStringSubmatch(l); m != nil {
				fmt.Sscan(m[1], &reported)
			}
		case <-timeout:
			t.Fatal("no report of the dropped lines after the reader came back")
		}
	}
	// The worker's next heartbeats carry the same count: nothing was
	// dropped since the reader came back.
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := demoStatus(t, "--control", s.ctl).Workers[0].LogLinesDropped
		if n == reported {
			break
		}
		if n > reported || time.Now().After(deadline) {
			t.Fatalf("reported %d dropped lines, status says %d", reported, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Logging goes on.
	if r := get(s.url + "/healthcheck"); r.status != 200 {
		t.Fatal(r.err)
	}
	timeout = time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, `"GET /healthcheck HTTP/1.1" 200`) {
				return
			}
		case <-timeout:
			t.Fatal("no access line after the reader came back")
		}
	}
}

// TestLogReaderGone is `demo serve 2>&1 | head`: the reader exits, and the
// server goes on serving (before, the worker and then the master died of
// SIGPIPE, exit 141); SIGTERM still ends it with exit code 0.
func TestLogReaderGone(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 0)
	s := serveOnPipe(t, "--workers", "2", "--mode", "mixed", "--calls", "1", "--external", ext)
	s.rf.Close()
	pids := childPids(t, s.cmd.Process.Pid)
	for range 50 {
		if r := get(s.url + "/"); r.status != 200 {
			t.Fatalf("after the log reader left: %d %v", r.status, r.err)
		}
	}
	load := startLoad(t, s.url, 4, 0)
	load.waitServed(2000, time.Minute)
	load.finish()
	if now := childPids(t, s.cmd.Process.Pid); !sameSet(now, pids) {
		t.Errorf("workers %v became %v: one died", pids, now)
	}
	snap := waitStatus(t, 5*time.Second, droppedLines, "--control", s.ctl)
	t.Logf("dropped: master %d, workers %d and %d", snap.LogLinesDropped, snap.Workers[0].LogLinesDropped, snap.Workers[1].LogLinesDropped)
	s.stop(t)
	if ws := s.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() || ws.ExitStatus() != 0 {
		t.Errorf("master ended with %v, want exit code 0", s.cmd.ProcessState)
	}
}

func sameSet(a, b []int) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestTostopTerminal: on a terminal with `stty tostop`, a process of a
// background process group that writes to it is stopped by SIGTTOU.
// Workers live in process groups of their own; they ignore SIGTTOU, so
// they write and serve (before: stopped at their first log line, killed
// for not answering pings, replaced every 5.5 s, forever).
func TestTostopTerminal(t *testing.T) {
	t.Parallel()
	ptm, pts := testkit.OpenPTY(t)
	defer ptm.Close()
	tio, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		t.Skipf("terminal attributes: %v", err)
	}
	tio.Lflag |= unix.TOSTOP
	if err := unix.IoctlSetTermios(int(pts.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(demoBin, "serve", "--port", "0", "--mode", "async")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	// A session of its own with the terminal as its controlling terminal:
	// the master is in the foreground, like `demo serve` typed in a shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	// The terminal's lines, read until the master and its workers are gone.
	lines := make(chan string)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(lines)
		sc := bufio.NewScanner(ptm)
		for sc.Scan() {
			select {
			case lines <- strings.TrimRight(sc.Text(), "\r"):
			case <-stop:
				return
			}
		}
	}()
	var seen []string
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		close(stop)
		ptm.Close() // ends the reader above on Linux (EIO) once the master is gone
		<-readerDone
		if t.Failed() {
			t.Logf("terminal:\n%s", strings.Join(seen, "\n"))
		}
	}()
	// waitLine looks for re in the lines seen so far, then in new ones.
	waitLine := func(re *regexp.Regexp, timeout time.Duration) []string {
		t.Helper()
		for _, l := range seen {
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the terminal closed before a line matching %q", re)
				}
				seen = append(seen, l)
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-deadline:
				t.Fatalf("no line matching %q within %v", re, timeout)
			}
		}
	}
	url := waitLine(serveRunning, 10*time.Second)[1]
	waitLine(regexp.MustCompile(`worker-1\[\d+\] `+contract.WorkerReadyLine(1, 1).String()), 5*time.Second)
	worker := childPids(t, cmd.Process.Pid)
	for i := range 5 {
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(url + "/healthcheck")
		if err != nil {
			t.Fatalf("request %d: %v (worker stopped by SIGTTOU?)", i, err)
		}
		resp.Body.Close()
	}
	waitLine(regexp.MustCompile(`worker-1\[\d+\] 127\.0\.0\.1:\d+ - "GET /healthcheck HTTP/1.1" 200`), 5*time.Second)
	if now := childPids(t, cmd.Process.Pid); len(now) != 1 || now[0] != worker[0] {
		t.Errorf("worker %v became %v", worker, now)
	}
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", worker[0]))
	if f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:])); len(f) < 1 || f[0] == "T" {
		t.Errorf("worker state %v: stopped", f)
	}
}

// droppedLines: the worker has dropped log lines.
func droppedLines(w control.Worker) bool { return w.LogLinesDropped > 0 }
