package experiment

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child processes (as os/exec's tests do):
// with EXPERIMENT_HELPER set it plays a small demo-like server instead of
// running tests.
const helperEnv = "EXPERIMENT_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	os.Exit(m.Run())
}

func helper(role string) int {
	logf := func(msg string) {
		fmt.Fprintf(os.Stderr, `{"level":"INFO","time":%q,"logger":"helper","msg":%q}`+"\n", time.Now().Format(time.RFC3339Nano), msg)
	}
	switch role {
	case "serve": // ready, then exit 0 on SIGTERM, like demo serve
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		logf("demo running on http://127.0.0.1:1 (Press CTRL+C to quit)")
		<-sigs
		logf("Shutting down")
		return 0
	case "stubborn": // ready, then ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		logf("demo running on http://127.0.0.1:2 (Press CTRL+C to quit)")
		time.Sleep(time.Hour)
		return 0
	case "fail": // cannot start
		fmt.Fprintln(os.Stderr, "demo: listen tcp 127.0.0.1:1: bind: address already in use")
		return 1
	case "silent": // never ready
		time.Sleep(time.Hour)
		return 0
	}
	return 2
}

func startHelper(t *testing.T, role string) *child {
	t.Helper()
	t.Setenv(helperEnv, role)
	c, err := startChild("helper "+role, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.stop(time.Second) })
	return c
}

func TestChildReadyThenStoppedCleanly(t *testing.T) {
	c := startHelper(t, "serve")
	m, err := c.waitFor(context.Background(), serveRunningRe, 10*time.Second)
	if err != nil || m[1] != "http://127.0.0.1:1" {
		t.Fatalf("waitFor: %v %v", m, err)
	}
	if err := c.stop(5 * time.Second); err != nil {
		t.Fatalf("stop after SIGTERM: %v", err)
	}
	if c.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit code %d", c.cmd.ProcessState.ExitCode())
	}
	// stop waited for the end of the output: the last line is in.
	out := c.output()
	if last := out[len(out)-1]; last.Msg != "Shutting down" || !last.JSON {
		t.Errorf("last line %+v, want the shutdown line", last)
	}
	if err := c.stop(time.Second); err != nil {
		t.Errorf("second stop: %v, want the first one's result", err)
	}
}

func TestChildIgnoringSigtermIsKilled(t *testing.T) {
	c := startHelper(t, "stubborn")
	if _, err := c.waitFor(context.Background(), serveRunningRe, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := c.stop(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stop: %v, want a killed error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %v", took)
	}
	if pid := c.cmd.Process.Pid; syscall.Kill(pid, 0) == nil {
		t.Errorf("process %d still exists", pid)
	}
}

func TestChildExitingEarlyNamesItsOutput(t *testing.T) {
	c := startHelper(t, "fail")
	_, err := c.waitFor(context.Background(), serveRunningRe, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("waitFor: %v, want an early-exit error quoting the child", err)
	}
}

func TestChildWaitEndsWithContextOrTimeout(t *testing.T) {
	c := startHelper(t, "silent")
	if _, err := c.waitFor(context.Background(), serveRunningRe, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("waitFor with a short timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.waitFor(ctx, serveRunningRe, 10*time.Second); err != context.Canceled {
		t.Errorf("waitFor with a cancelled context: %v", err)
	}
	// SIGTERM's default action ends it: not a clean exit.
	if err := c.stop(5 * time.Second); err == nil {
		t.Error("stop of a child killed by SIGTERM reported success")
	}
}
