package experiment

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a demo process the experiment started: `demo external` or
// `demo serve`. One goroutine owns the process (start and wait), another
// reads its stderr; stop ends both.
type child struct {
	name string // for messages: "demo serve"
	cmd  *exec.Cmd

	exited  chan struct{} // closed once Wait returned
	waitErr error         // valid after exited
	eof     chan struct{} // closed once stderr is fully read
	stderr  *os.File      // our read end; the reader closes it

	mu    sync.Mutex
	lines []logLine
	grew  chan struct{} // closed and replaced when a line arrives

	wg sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

// startChild runs bin args... with its stderr on a pipe we read.
//
// Pdeathsig kills the child if we die without cleaning up (SIGKILL, a
// crash). The kernel sends it when the *thread* that forked the child ends,
// not the process, so the fork happens on a goroutine locked to its thread
// for as long as the child lives: the Go runtime cannot retire that thread
// under it.
func startChild(name, bin string, args ...string) (*child, error) {
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	// An *os.File is inherited as is: no copying goroutine in between, and
	// the workers of `demo serve` write to the same pipe.
	cmd.Stderr = stderrW
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		// Own process group: a terminal's Ctrl+C reaches only us, and we
		// stop the children in order (a second SIGINT would make serve
		// kill its workers instead of draining them).
		Setpgid: true,
	}
	c := &child{
		name:   name,
		cmd:    cmd,
		exited: make(chan struct{}),
		eof:    make(chan struct{}),
		stderr: stderrR,
		grew:   make(chan struct{}),
	}
	startErr := make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	err = <-startErr
	stderrW.Close() // the child has its copy; ours would hide EOF
	if err != nil {
		stderrR.Close()
		c.wg.Wait()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.read()
	}()
	return c, nil
}

func (c *child) read() {
	defer close(c.eof)
	defer c.stderr.Close()
	sc := bufio.NewScanner(c.stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := parseLogLine(sc.Text())
		c.mu.Lock()
		c.lines = append(c.lines, l)
		close(c.grew)
		c.grew = make(chan struct{})
		c.mu.Unlock()
	}
}

// waitFor waits for a line whose message matches re and returns its
// submatches. It fails when the child exits first, ctx ends or timeout
// passes.
func (c *child) waitFor(ctx context.Context, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		c.mu.Lock()
		for ; seen < len(c.lines); seen++ {
			if m := re.FindStringSubmatch(c.lines[seen].Msg); m != nil {
				c.mu.Unlock()
				return m, nil
			}
		}
		grew := c.grew
		c.mu.Unlock()
		select {
		case <-grew:
		case <-c.eof:
			// Every line is in; one last look before giving up.
			c.mu.Lock()
			n := len(c.lines)
			c.mu.Unlock()
			if seen < n {
				continue
			}
			<-c.exited
			return nil, fmt.Errorf("%s exited (%v) before it was ready%s", c.name, c.waitErr, c.tail())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("%s not ready after %v%s", c.name, timeout, c.tail())
		}
	}
}

// tail is the child's last few lines, for error messages.
func (c *child) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines[max(0, len(c.lines)-3):] {
		b.WriteString("\n    ")
		b.WriteString(l.Msg)
	}
	return b.String()
}

// output returns every line read so far.
func (c *child) output() []logLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]logLine(nil), c.lines...)
}

// stop asks the child to exit (SIGTERM), kills it after grace, and waits
// for it and for the end of its output. It returns an error unless the child
// exited 0 on its own. Only the first call acts (later ones return the same
// error), so callers can both defer it and call it early.
func (c *child) stop(grace time.Duration) error {
	c.stopOnce.Do(func() { c.stopErr = c.terminate(grace) })
	return c.stopErr
}

func (c *child) terminate(grace time.Duration) error {
	var err error
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
		t := time.NewTimer(grace)
		select {
		case <-c.exited:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			<-c.exited
			err = fmt.Errorf("%s did not exit within %v of SIGTERM: killed", c.name, grace)
		}
		t.Stop()
	}
	if err == nil && c.waitErr != nil {
		err = fmt.Errorf("%s: %w%s", c.name, c.waitErr, c.tail())
	}
	// EOF comes once every process holding the pipe is gone. A grandchild
	// that outlived its parent must not keep us waiting: stop reading.
	select {
	case <-c.eof:
	case <-time.After(time.Second):
		_ = c.stderr.SetReadDeadline(time.Now())
		<-c.eof
		err = errors.Join(err, fmt.Errorf("%s: something still holds its stderr after it exited", c.name))
	}
	c.wg.Wait()
	return err
}
