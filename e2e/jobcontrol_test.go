package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"demo/internal/testkit"
)

// TestMasterAsAJob: `demo serve` typed into an interactive bash on a
// terminal with `stty tostop`, then Ctrl+Z, a pause longer than the
// healthcheck timeout and --timeout, bg, fg. In the background the master
// may not write to the terminal: at its first line it stops, as any job
// there does ("Stopped (tty output)"), and stays stopped, using no CPU.
// Its workers, in process groups of their own, serve throughout. On fg it
// goes on: the time it did not run is held against no worker (none is
// killed, none is counted as stalled), and SIGTTOU sent by a user still
// retires a worker. Before, the terminal's SIGTTOU was taken for that
// command: the master scaled down to one worker at its first line in the
// background, and spun a core retrying the write.
func TestMasterAsAJob(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the job in")
	}
	term := startShell(t, bash)
	term.run("stty tostop")
	term.run(fmt.Sprintf("%s serve --port 0 --workers 2 --mode async --timeout-worker-healthcheck 1 --timeout 2", demoBin))
	master, _ := strconv.Atoi(term.wait(regexp.MustCompile(`Started parent process \[(\d+)\]`), 10*time.Second)[1])
	url := term.wait(serveRunning, 10*time.Second)[1]
	t.Cleanup(func() { _ = syscall.Kill(master, syscall.SIGKILL) })
	workers := childPids(t, master)
	serves := func(when string) {
		t.Helper()
		c := &http.Client{Timeout: 3 * time.Second}
		for range 4 {
			resp, err := c.Get(url + "/healthcheck")
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			resp.Body.Close()
		}
	}

	term.keys("\x1a") // Ctrl+Z
	term.wait(regexp.MustCompile(`\[1\]\+\s+Stopped\s`), 5*time.Second)
	serves("with the master stopped by Ctrl+Z")
	time.Sleep(2500 * time.Millisecond) // the pause under test

	term.run("bg")
	term.wait(regexp.MustCompile(`(?m)^\[1\]\+ .* &$`), 5*time.Second) // continued
	waitProcState(t, master, "T", 5*time.Second)
	term.run("jobs -l")
	term.wait(regexp.MustCompile(fmt.Sprintf(`%d Stopped \(tty output\)`, master)), 5*time.Second)
	cpu := cpuTicks(t, master)
	serves("with the master stopped by the terminal")
	if now := cpuTicks(t, master); now != cpu {
		t.Errorf("the stopped master used CPU: %d ticks, then %d", cpu, now)
	}

	term.run("fg")
	term.wait(regexp.MustCompile(fmt.Sprintf(`Parent process \[%d\] did not run for \d+\.\ds`, master)), 5*time.Second)
	serves("after fg")
	if now := childPids(t, master); !sameSet(now, workers) {
		t.Errorf("workers %v became %v", workers, now)
	}
	if err := syscall.Kill(master, syscall.SIGTTOU); err != nil {
		t.Fatal(err)
	}
	term.wait(regexp.MustCompile(`Received SIGTTOU, decreasing the number of processes\.`), 5*time.Second)
	term.wait(regexp.MustCompile(`Child process \[\d+\] stopped`), 5*time.Second)

	term.keys("\x03") // Ctrl+C
	term.wait(regexp.MustCompile(fmt.Sprintf(`Stopping parent process \[%d\]`, master)), 10*time.Second)
	out := term.output()
	if n := strings.Count(out, "Received SIGTTOU"); n != 1 {
		t.Errorf("%d SIGTTOUs taken for a command, want the one sent", n)
	}
	for _, bad := range []string{"not ready after", "did not answer", "WORKER TIMEOUT", "event loop was blocked", "died"} {
		if strings.Contains(out, bad) {
			t.Errorf("the terminal shows %q", bad)
		}
	}
}

// shell is an interactive bash on a pseudo-terminal of its own, as in a
// terminal window: the session leader, with job control.
type shell struct {
	t   *testing.T
	ptm *os.File

	mu      sync.Mutex
	out     strings.Builder
	changed chan struct{} // 1-buffered: output arrived
	closed  chan struct{} // the reader is done
}

func startShell(t *testing.T, bash string) *shell {
	t.Helper()
	ptm, pts := testkit.OpenPTY(t)
	cmd := exec.Command(bash, "--norc", "--noprofile", "-i")
	cmd.Env = append(os.Environ(), "PS1=$ ", "TERM=dumb", "HISTFILE=/dev/null")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	sh := &shell{t: t, ptm: ptm, changed: make(chan struct{}, 1), closed: make(chan struct{})}
	go sh.read()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		ptm.Close() // ends the reader (EIO) now that the shell is gone
		<-sh.closed
		if t.Failed() {
			t.Logf("terminal:\n%s", sh.output())
		}
	})
	return sh
}

func (sh *shell) read() {
	defer close(sh.closed)
	buf := make([]byte, 4096)
	for {
		n, err := sh.ptm.Read(buf)
		sh.mu.Lock()
		sh.out.WriteString(strings.ReplaceAll(string(buf[:n]), "\r", ""))
		sh.mu.Unlock()
		select {
		case sh.changed <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

func (sh *shell) output() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.out.String()
}

// keys types s on the terminal's keyboard.
func (sh *shell) keys(s string) {
	sh.t.Helper()
	if _, err := sh.ptm.WriteString(s); err != nil {
		sh.t.Fatal(err)
	}
}

// run types a command line.
func (sh *shell) run(line string) { sh.t.Helper(); sh.keys(line + "\n") }

// wait returns the submatches of re in everything the terminal showed, once
// it matches.
func (sh *shell) wait(re *regexp.Regexp, timeout time.Duration) []string {
	sh.t.Helper()
	deadline := time.After(timeout)
	for {
		if m := re.FindStringSubmatch(sh.output()); m != nil {
			return m
		}
		select {
		case <-sh.changed:
		case <-sh.closed:
			if m := re.FindStringSubmatch(sh.output()); m != nil {
				return m
			}
			sh.t.Fatalf("the terminal closed before showing %q", re)
		case <-deadline:
			sh.t.Fatalf("the terminal did not show %q within %v", re, timeout)
		}
	}
}

// waitProcState polls until pid's state (ps's letter) is state: a stop has
// no event a test can wait on.
func waitProcState(t *testing.T, pid int, state string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; {
		if f := procStatFields(t, pid); f[0] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not in state %s within %v", pid, state, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpuTicks is the CPU time pid used so far, user and system, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	f := procStatFields(t, pid)
	user, _ := strconv.Atoi(f[11])
	sys, _ := strconv.Atoi(f[12])
	return user + sys
}

// procStatFields are the fields of /proc/PID/stat after the command name:
// state first.
func procStatFields(t *testing.T, pid int) []string {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	return f
}
