package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

// TestSpawnerBlocksJobStops: a process the spawner starts has SIGTSTP,
// SIGTTIN and SIGTTOU blocked from its fork on, and still after its exec,
// so a stop sent to the master's group meanwhile cannot stop it in a group
// of its own (spawnguard.go).
func TestSpawnerBlocksJobStops(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat to show its signal mask")
	}
	sp := startSpawner()
	defer sp.stop()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	attr := &os.ProcAttr{Files: []*os.File{nil, outW, os.Stderr}, Sys: &syscall.SysProcAttr{Setpgid: true}}
	proc, err := sp.start(cat, []string{"cat", "/proc/self/status"}, attr, func(time.Duration) {})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Wait()
	var blocked uint64
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "SigBlk:"); ok {
			if blocked, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, sig := range jobStops {
		if blocked&(1<<(sig-1)) == 0 {
			t.Errorf("%s is not blocked in the child (SigBlk %x)", unix.SignalName(sig), blocked)
		}
	}
	if blocked&(1<<(syscall.SIGTERM-1)) != 0 {
		t.Errorf("SIGTERM is blocked in the child (SigBlk %x): only the job-control stops should be", blocked)
	}
}

// TestContinueStoppedSpawn: while a spawn has not returned, a stopped
// process the spawner forked that is no worker is continued, and said so;
// a stopped worker is left to the healthcheck. Each stand-in stops itself
// after its exec: to the guard it looks the same as a child stopped before.
func TestContinueStoppedSpawn(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to stop itself")
	}
	core, logs := observer.New(zap.InfoLevel)
	s := newSupervisor(Config{Logger: zap.New(core)}, watchSocketFile(""))
	s.spawner = startSpawner()
	defer s.spawner.stop()
	stopped := func() *os.Process {
		t.Helper()
		attr := &os.ProcAttr{Files: []*os.File{nil, nil, os.Stderr}, Sys: &syscall.SysProcAttr{Setpgid: true}}
		p, err := s.spawner.start(sh, []string{"sh", "-c", "kill -STOP $$; exit 7"}, attr, func(time.Duration) {})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Kill(); _, _ = p.Wait() })
		waitStopped(t, p.Pid)
		return p
	}
	worker := stopped()
	s.children = append(s.children, &child{pid: worker.Pid, index: 1, total: 2})
	stuck := stopped()

	s.continueStoppedSpawn("2/2", 1500*time.Millisecond)
	st, err := stuck.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 7 {
		t.Errorf("the stopped child ended with %v, want exit status 7 (continued)", st)
	}
	if got := procState(worker.Pid); got != 'T' {
		t.Errorf("the stopped worker is in state %q, want it left stopped (T)", got)
	}
	want := fmt.Sprintf("Child process [%d] for worker 2/2 was stopped before it could run the worker (likely by a SIGSTOP to the master's process group), 1.5s into its start: sent it SIGCONT", stuck.Pid)
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 1 || msgs[0] != want {
		t.Errorf("logged %q, want just %q", msgs, want)
	}
}

// TestSlowSpawnIsWatched: while a spawn has not returned, start calls its
// slow func every check, with the time waited; once it returns, start
// returns what it did.
func TestSlowSpawnIsWatched(t *testing.T) {
	release := make(chan struct{})
	sp := &spawner{
		reqs:  make(chan spawnReq),
		done:  make(chan struct{}),
		check: 10 * time.Millisecond,
		startProcess: func(string, []string, *os.ProcAttr) (*os.Process, error) {
			<-release
			return nil, errors.New("released")
		},
	}
	sp.run()
	defer sp.stop()
	var waits []time.Duration
	_, err := sp.start("demo", nil, nil, func(waited time.Duration) {
		waits = append(waits, waited)
		if len(waits) == 3 {
			close(release)
		}
	})
	if err == nil || err.Error() != "released" {
		t.Errorf("start returned %v, want the spawn's own error", err)
	}
	if len(waits) != 3 || waits[0] < sp.check || waits[1] <= waits[0] || waits[2] <= waits[1] {
		t.Errorf("slow was called with %v, want 3 growing waits from %v on", waits, sp.check)
	}
}
