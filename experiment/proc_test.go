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

	"demo/contract"
)

// The test binary doubles as the child processes (as os/exec's tests do):
// with EXPERIMENT_HELPER set it plays a small demo-like server instead of
// running tests. Package childproc tests the process handling itself; these
// test what experiment adds: JSON log lines and its exit-status policy.
const helperEnv = "EXPERIMENT_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	os.Exit(m.Run())
}

func helper(role string) int {
	logf := func(msg string, fields ...string) {
		fmt.Fprintf(os.Stderr, `{"level":"INFO","time":%q,"logger":"helper","msg":%q%s}`+"\n", time.Now().Format(time.RFC3339Nano), msg, strings.Join(fields, ""))
	}
	switch role {
	case "serve": // ready, then exit 0 on SIGTERM, like demo serve
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		logf("not the one", `,"url":"http://127.0.0.1:2"`)
		logf("running", `,"event":"running","url":"http://127.0.0.1:1"`)
		<-sigs
		logf("Shutting down")
		return 0
	case "silent": // never ready; SIGTERM's default action ends it
		time.Sleep(time.Hour)
		return 0
	}
	return 2
}

func TestChildReadyThenStoppedCleanly(t *testing.T) {
	t.Setenv(helperEnv, "serve")
	c, err := startChild("helper serve", os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopChild(c, time.Second) })
	// The entry is found by its event, the URL read from its field.
	running, err := waitEvent(context.Background(), c, contract.EventRunning, 10*time.Second)
	if err != nil || running.URL != "http://127.0.0.1:1" || running.Msg != "running" {
		t.Fatalf("waitEvent: %+v %v", running, err)
	}
	if err := stopChild(c, 5*time.Second); err != nil {
		t.Fatalf("stop after SIGTERM: %v", err)
	}
	// The stop waited for the end of the output: the last line is in.
	lines := c.Lines()
	last, ok := contract.ParseLogEntry(lines[len(lines)-1].Raw)
	if !ok || last.Msg != "Shutting down" || last.Logger != "helper" || lines[len(lines)-1].Text != "Shutting down" {
		t.Errorf("last line %+v, want the shutdown line", lines[len(lines)-1])
	}
}

func TestStopWantsExitStatusZero(t *testing.T) {
	t.Setenv(helperEnv, "silent")
	c, err := startChild("helper silent", os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopChild(c, time.Second) })
	// SIGTERM's default action ends it: not a clean exit.
	if err := stopChild(c, 5*time.Second); err == nil {
		t.Error("stop of a child killed by SIGTERM reported success")
	}
}
