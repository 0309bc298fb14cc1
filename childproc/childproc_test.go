package childproc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/childproc"
)

// The test binary doubles as the children (as os/exec's tests do): with
// CHILDPROC_HELPER set it plays a role instead of running tests.
const helperEnv = "CHILDPROC_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	os.Exit(m.Run())
}

var (
	readyRe      = regexp.MustCompile(`^running on (\S+)$`)
	grandchildRe = regexp.MustCompile(`^grandchild (\d+)$`)
)

func helper(role string) int {
	switch role {
	case "serve": // ready, then exit 0 on SIGTERM, like demo serve
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "INFO: tick 1")
		fmt.Fprintln(os.Stderr, "INFO: tick 2")
		fmt.Fprintln(os.Stderr, "INFO: running on http://127.0.0.1:1")
		<-sigs
		fmt.Println("INFO: shutting down") // stdout: the same pipe
		return 0
	case "stubborn": // ready, then ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "running on http://127.0.0.1:2")
		time.Sleep(time.Hour)
		return 0
	case "fail": // cannot start
		fmt.Fprintln(os.Stderr, "demo: listen tcp 127.0.0.1:1: bind: address already in use")
		return 1
	case "env": // prints the variables that would configure a demo serve, then waits
		for _, name := range []string{"DEMO_WORKERS", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "DEMO_GIVEN"} {
			fmt.Fprintf(os.Stderr, "%s=%q\n", name, os.Getenv(name))
		}
		fmt.Fprintln(os.Stderr, "running on http://127.0.0.1:4")
		time.Sleep(time.Hour)
		return 0
	case "silent": // never ready; SIGTERM's default action ends it
		time.Sleep(time.Hour)
		return 0
	case "chatty": // ready, then 20,000 lines (≈ 500 KiB), then exit 3
		fmt.Fprintln(os.Stderr, "INFO: tick 1")
		fmt.Fprintln(os.Stderr, "running on http://127.0.0.1:3")
		w := bufio.NewWriter(os.Stderr)
		for i := range 20000 {
			fmt.Fprintf(w, "INFO: 127.0.0.1:%d - \"GET /healthcheck HTTP/1.1\" 200\n", i)
		}
		w.Flush()
		return 3
	case "parent": // starts a child of its own, then waits to be killed
		c, err := childproc.Start(childproc.Spec{Name: "grandchild", Path: os.Args[0], Env: []string{helperEnv + "=serve"},
			Text: func(raw string) string { return strings.TrimPrefix(raw, "INFO: ") }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Once ready it writes nothing more: no SIGPIPE can kill it when
		// we die, only Pdeathsig.
		if _, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "grandchild %d\n", c.PID())
		time.Sleep(time.Hour)
		return 0
	case "leaker": // leaves a grandchild holding its stderr, then exits 0
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=silent")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "grandchild %d\n", cmd.Process.Pid)
		return 0
	}
	return 2
}

func start(t *testing.T, role string, text func(string) string) *childproc.Child {
	t.Helper()
	c, err := childproc.Start(childproc.Spec{
		Name: "helper " + role,
		Path: os.Args[0],
		Env:  []string{helperEnv + "=" + role},
		Text: text,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Stop(time.Second)
		assertNoGoroutinesLeft(t)
	})
	return c
}

// assertNoGoroutinesLeft fails when a goroutine of the package outlives
// Stop. A goroutine that has just called wg.Done may still be unwinding, so
// it looks again for a short while before failing.
func assertNoGoroutinesLeft(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	buf := make([]byte, 1<<20)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "childproc.Start") && !strings.Contains(stacks, "childproc.(*Child)") {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines of the package left after Stop:\n%s", stacks)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists (kill 0: %v)", pid, err)
	}
}

func TestReadyThenStoppedCleanly(t *testing.T) {
	c := start(t, "serve", func(raw string) string { return strings.TrimPrefix(raw, "INFO: ") })
	// readyRe is anchored: it matches only the Text that Spec.Text made.
	m, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second)
	if err != nil || m.Groups[1] != "http://127.0.0.1:1" {
		t.Fatalf("WaitLine: %+v %v", m, err)
	}
	if m.Line.Raw != "INFO: running on http://127.0.0.1:1" || m.Index != 2 || m.Line.At.IsZero() {
		t.Errorf("match %+v", m)
	}
	if c.ExitErr() != nil {
		t.Errorf("ExitErr while running: %v", c.ExitErr())
	}
	pid := c.PID()
	if err := c.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop after SIGTERM: %v", err)
	}
	if err := c.ExitErr(); err != nil {
		t.Errorf("ExitErr after exit 0: %v", err)
	}
	// Stop waited for the end of the output: the last line, written to
	// stdout on SIGTERM, is in.
	lines := c.Lines()
	if last := lines[len(lines)-1]; last.Text != "shutting down" {
		t.Errorf("last line %+v, want the shutdown line", last)
	}
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v, want the first one's result", err)
	}
	assertGone(t, pid)
	assertNoGoroutinesLeft(t)
}

func TestWaitLineFrom(t *testing.T) {
	c := start(t, "serve", nil)
	tick := regexp.MustCompile(`tick (\d)`)
	first, err := c.WaitLine(context.Background(), tick, 0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.WaitLine(context.Background(), tick, first.Index+1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if first.Groups[1] != "1" || second.Groups[1] != "2" || second.Line.At.Before(first.Line.At) {
		t.Errorf("first %+v, second %+v", first, second)
	}
	if n := c.Count(); n < 2 {
		t.Errorf("Count %d after two lines", n)
	}
}

// TestWaitForTestsWholeLines: WaitFor hands the test the whole line, raw
// and text.
func TestWaitForTestsWholeLines(t *testing.T) {
	c := start(t, "serve", func(raw string) string { return strings.TrimPrefix(raw, "INFO: ") })
	m, err := c.WaitFor(context.Background(), "a second tick", func(l childproc.Line) bool {
		return strings.HasPrefix(l.Raw, "INFO: ") && l.Text == "tick 2"
	}, 0, 10*time.Second)
	if err != nil || m.Index != 1 || m.Groups != nil {
		t.Fatalf("WaitFor: %+v %v", m, err)
	}
}

func TestWaitForNamesWhatItWaitedFor(t *testing.T) {
	c := start(t, "fail", nil)
	_, err := c.WaitFor(context.Background(), "a ready entry", func(childproc.Line) bool { return false }, 0, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited (exit status 1) before a ready entry") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("WaitFor: %v, want an early-exit error naming what it waited for", err)
	}
}

func TestIgnoringSigtermIsKilledAfterGrace(t *testing.T) {
	c := start(t, "stubborn", nil)
	if _, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err := c.Stop(200 * time.Millisecond)
	took := time.Since(begin)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop: %v, want a killed error", err)
	}
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("Stop took %v with a 200ms grace", took)
	}
	var exit *exec.ExitError
	if !errors.As(c.ExitErr(), &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("ExitErr %v, want death by SIGKILL", c.ExitErr())
	}
	assertGone(t, c.PID())
}

func TestExitingEarlyReportsItsExitAndOutput(t *testing.T) {
	c := start(t, "fail", nil)
	_, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited (exit status 1)") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("WaitLine: %v, want an early-exit error quoting the child", err)
	}
	var exit *exec.ExitError
	if err := c.ExitErr(); !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("ExitErr %v, want exit status 1 and the last line", err)
	}
	select {
	case <-c.Exited():
	default:
		t.Error("Exited not closed after WaitLine saw the exit")
	}
	// It exited by itself: nothing for Stop to complain about.
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// TestSignalAndExitCode: a signal reaches the child itself; its exit code
// is known once it exited, and a signal after that says it is done.
func TestSignalAndExitCode(t *testing.T) {
	c := start(t, "serve", func(raw string) string { return strings.TrimPrefix(raw, "INFO: ") })
	if _, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if code := c.ExitCode(); code != -1 {
		t.Errorf("ExitCode while running: %d, want -1", code)
	}
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	<-c.Exited()
	if code := c.ExitCode(); code != 0 {
		t.Errorf("ExitCode after SIGTERM: %d, want 0 (the helper exits 0)", code)
	}
	if err := c.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after the exit: %v, want os.ErrProcessDone", err)
	}

	f := start(t, "fail", nil)
	<-f.Exited()
	if code := f.ExitCode(); code != 1 {
		t.Errorf("ExitCode of a child that exits 1: %d", code)
	}
}

// TestDrainAfterKeepsLinesUpToItThenOnlyTheTail: lines are kept up to the
// DrainAfter line, the rest of the output is read (the child is not stopped
// by a full pipe) and only its end is quoted.
func TestDrainAfterKeepsLinesUpToItThenOnlyTheTail(t *testing.T) {
	c, err := childproc.Start(childproc.Spec{Name: "helper chatty", Path: os.Args[0], Env: []string{helperEnv + "=chatty"}, DrainAfter: readyRe})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(time.Second) //nolint:errcheck
	m, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second)
	if err != nil || m.Groups[1] != "http://127.0.0.1:3" {
		t.Fatalf("WaitLine: %v %v", m, err)
	}
	select {
	case <-c.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the child did not get its 20,000 lines out")
	}
	if err := c.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if n := c.Count(); n != 2 {
		t.Errorf("%d lines kept, want the 2 up to the DrainAfter line", n)
	}
	tail := c.Tail()
	if strings.Count(tail, "\n    ") != 5 || !strings.HasSuffix(tail, `INFO: 127.0.0.1:19999 - "GET /healthcheck HTTP/1.1" 200`) ||
		!strings.Contains(tail, "\n    INFO: 127.0.0.1:19995 -") {
		t.Errorf("Tail %q: want the last 5 lines, whole", tail)
	}
	var exit *exec.ExitError
	if err := c.ExitErr(); !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(err.Error(), "127.0.0.1:19999") {
		t.Errorf("ExitErr %v, want exit status 3 quoting the drained output", err)
	}
	assertNoGoroutinesLeft(t)
}

func TestWaitLineEndsWithContextOrTimeout(t *testing.T) {
	c := start(t, "silent", nil)
	if _, err := c.WaitLine(context.Background(), readyRe, 0, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no line matching") {
		t.Errorf("WaitLine with a short timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.WaitLine(ctx, readyRe, 0, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitLine with a cancelled context: %v", err)
	}
	// SIGTERM's default action ends it: Stop succeeds, the status tells.
	if err := c.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	var exit *exec.ExitError
	if !errors.As(c.ExitErr(), &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("ExitErr %v, want death by SIGTERM", c.ExitErr())
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	_, err := childproc.Start(childproc.Spec{Name: "nothing", Path: "/nonexistent/demo"})
	if err == nil || !strings.Contains(err.Error(), "start nothing") {
		t.Errorf("Start: %v", err)
	}
	assertNoGoroutinesLeft(t)
}

// A child dies with its parent even though the parent never stopped it:
// Pdeathsig, sent when the forking thread (here: the whole process) dies.
func TestChildDiesWithItsParent(t *testing.T) {
	parent := start(t, "parent", nil)
	m, err := parent.WaitLine(context.Background(), grandchildRe, 0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gpid, _ := strconv.Atoi(m.Groups[1])
	// A pidfd names this very process: no pid-reuse race, and it turns
	// readable when the process exits, reaped or not.
	pidfd, err := unix.PidfdOpen(gpid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", gpid, err)
	}
	defer unix.Close(pidfd)
	if err := syscall.Kill(parent.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !readable(t, pidfd, 5*time.Second) {
		_ = syscall.Kill(gpid, syscall.SIGKILL)
		t.Fatalf("grandchild %d outlived its killed parent", gpid)
	}
}

func readable(t *testing.T, fd int, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left/time.Millisecond)+1)
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			t.Fatalf("poll: %v", err)
		case n > 0:
			return true
		}
	}
}

// TestChildrenArgvAndAlive: what /proc says of a child's own child, found
// from a thread other than the one that forked it, until it is gone.
func TestChildrenArgvAndAlive(t *testing.T) {
	parent := start(t, "parent", nil)
	m, err := parent.WaitLine(context.Background(), grandchildRe, 0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gpid, _ := strconv.Atoi(m.Groups[1])
	kids, err := childproc.Children(parent.PID())
	if err != nil || !slices.Equal(kids, []int{gpid}) {
		t.Errorf("Children: %v %v, want [%d]", kids, err, gpid)
	}
	if argv, err := childproc.Argv(gpid); err != nil || !slices.Equal(argv, []string{os.Args[0]}) {
		t.Errorf("Argv: %q %v, want [%q]", argv, err, os.Args[0])
	}
	if !childproc.Alive(gpid) {
		t.Errorf("grandchild %d not alive", gpid)
	}
	if err := parent.Stop(time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// Its Pdeathsig came with the parent's death; a zombie counts as gone.
	deadline := time.Now().Add(5 * time.Second)
	for childproc.Alive(gpid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d alive 5s after its parent", gpid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := childproc.Children(parent.PID()); err == nil {
		t.Errorf("Children of a reaped process: no error")
	}
	if _, err := childproc.Argv(parent.PID()); err == nil {
		t.Errorf("Argv of a reaped process: no error")
	}
}

// A grandchild that keeps the output pipe open must not hang Stop.
func TestStopGivesUpOnOutputHeldByAGrandchild(t *testing.T) {
	c := start(t, "leaker", nil)
	m, err := c.WaitLine(context.Background(), grandchildRe, 0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gpid, _ := strconv.Atoi(m.Groups[1])
	defer syscall.Kill(gpid, syscall.SIGKILL) //nolint:errcheck
	<-c.Exited()
	begin := time.Now()
	err = c.Stop(time.Second)
	if err == nil || !strings.Contains(err.Error(), "still holds its output") {
		t.Errorf("Stop: %v, want the held-output error", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Stop took %v", took)
	}
	if c.ExitErr() != nil {
		t.Errorf("ExitErr %v, want exit 0", c.ExitErr())
	}
}

// TestChildrenGetNoServerVariables: what the user exported for their own
// demo serve (DEMO_WORKERS, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS) does not
// reach the servers a tool starts; what the tool passes does.
func TestChildrenGetNoServerVariables(t *testing.T) {
	t.Setenv("DEMO_WORKERS", "7")
	t.Setenv("WEB_CONCURRENCY", "3")
	t.Setenv("FORWARDED_ALLOW_IPS", "*")
	c, err := childproc.Start(childproc.Spec{Name: "helper env", Path: os.Args[0], Env: []string{helperEnv + "=env", "DEMO_GIVEN=yes"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(time.Second) })
	if _, err := c.WaitLine(context.Background(), readyRe, 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range c.Lines() {
		got = append(got, l.Text)
	}
	want := []string{`DEMO_WORKERS=""`, `WEB_CONCURRENCY=""`, `FORWARDED_ALLOW_IPS=""`, `DEMO_GIVEN="yes"`}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("the child saw %q, want %q", got, want)
	}
}
