package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"demo/childproc"
	"demo/contract"
)

// The test binary plays demo itself, as os/exec's tests play their helper
// processes: started with playDemo in its environment, TestMain runs main
// instead of the tests. The command line is tested as users run it — argv,
// stdout, stderr, exit code — on the code under test, with no binary to
// build (the end-to-end tests in e2e/ build the real one); and a `demo
// serve` started so runs this same binary as its workers, which inherit
// the variable. (Not a DEMO_ name: those configure demo.)
const playDemo = "CLI_TEST_PLAYS_DEMO"

// demoBin runs the test binary as demo: a link named demo to it, so that
// what demo prints under its own name (help, man page, completion) reads
// as it does for users.
var demoBin string

func TestMain(m *testing.M) {
	if os.Getenv(playDemo) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "demo-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	demoBin = filepath.Join(dir, "demo")
	if err := os.Symlink(exe, demoBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Every child inherits it, however it is started.
	os.Setenv(playDemo, "1")
	return m.Run()
}

// runDemoEnv runs `demo args...` with extra environment variables to its
// end and returns what it printed and its exit code.
func runDemoEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, demoBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if ctx.Err() != nil || (err != nil && !errors.As(err, &exit)) {
		t.Fatalf("demo %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// startServeEnv starts `demo serve args...` with extra environment
// variables and waits until it runs; it is stopped when the test ends.
func startServeEnv(t *testing.T, env []string, args ...string) *childproc.Child {
	t.Helper()
	c, err := childproc.Start(childproc.Spec{Name: "demo serve", Path: demoBin, Args: append([]string{"serve"}, args...), Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(0) })
	waitLine(t, c, contract.RunningLine(contract.ServeName))
	return c
}

// waitLine waits for a line of c matching re.
func waitLine(t *testing.T, c *childproc.Child, re *regexp.Regexp) {
	t.Helper()
	if _, err := c.WaitLine(context.Background(), re, 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// workers counts the worker processes a serve started.
func workers(c *childproc.Child) int {
	n := 0
	for _, l := range c.Lines() {
		if contract.WorkerStartedLine("").MatchString(l.Text) {
			n++
		}
	}
	return n
}

// workerArgv is the argv of a serve's one worker.
func workerArgv(t *testing.T, c *childproc.Child) []string {
	t.Helper()
	kids, err := childproc.Children(c.PID())
	if err != nil || len(kids) != 1 {
		t.Fatalf("children of the master: %v %v, want one", kids, err)
	}
	argv, err := childproc.Argv(kids[0])
	if err != nil {
		t.Fatal(err)
	}
	return argv
}
