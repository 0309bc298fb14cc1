package experiment

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
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
	// The regexp sees the message, not the JSON around it.
	m, err := c.WaitLine(context.Background(), serveRunningRe, 0, 10*time.Second)
	if err != nil || m.Groups[1] != "http://127.0.0.1:1" {
		t.Fatalf("WaitLine: %v %v", m.Groups, err)
	}
	if err := stopChild(c, 5*time.Second); err != nil {
		t.Fatalf("stop after SIGTERM: %v", err)
	}
	// The stop waited for the end of the output: the last line is in.
	out := logLines(c)
	if last := out[len(out)-1]; last.Msg != "Shutting down" || !last.JSON || last.Logger != "helper" {
		t.Errorf("last line %+v, want the shutdown line", last)
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

// logLines parses every line c wrote.
func logLines(c *childproc.Child) []logLine {
	raw := c.Lines()
	lines := make([]logLine, len(raw))
	for i, l := range raw {
		lines[i] = parseLogLine(l.Raw)
	}
	return lines
}
