// Package childproc runs the helper processes of demo's tools (bench,
// experiment): a server under test, the slow external API, Uvicorn.
//
// A child dies with us (Pdeathsig), runs in its own process group, has its
// stdout and stderr read line by line so that callers can wait for a line
// such as "running on http://...", and is always waited for when stopped:
// neither a process nor a goroutine outlives Stop.
package childproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"demo/contract"
)

// Spec describes a child to start.
type Spec struct {
	Name       string     // for messages: "demo serve"
	Path       string     // the executable
	Args       []string   // without the program name
	Env        []string   // added to our environment, less contract.WithoutConfigEnv's variables
	ExtraFiles []*os.File // become fds 3, 4, ... in the child
	Dir        string     // working directory; empty: ours

	// Text, when set, turns each raw output line into the text that
	// WaitLine matches and error messages quote, e.g. the message of a JSON
	// log line. It must accept any line (a panic is not JSON).
	Text func(raw string) string

	// DrainAfter, when set, ends the keeping of lines at the first line it
	// matches (that line is kept): from then on the output is read in large
	// chunks and dropped, all but its last tailBytes, which Tail and error
	// messages quote. A server under load may log 100,000 lines a second,
	// and keeping each with its time costs the reader a share of a core —
	// on the cores the server is being measured on (docs/performance.md,
	// optimisation 9).
	DrainAfter *regexp.Regexp
}

// Line is one line of the child's output.
type Line struct {
	At   time.Time // when we read it
	Raw  string
	Text string // Spec.Text(Raw), or Raw
}

// Match is a line WaitLine found.
type Match struct {
	Index  int      // the line's index in Lines
	Line   Line     // the line itself
	Groups []string // the regexp's submatches; [0] is the whole match
}

// MaxLines bounds the lines a child keeps: a long run must not grow without
// bound, and the start-up lines everybody waits for come first. Later lines
// are read and dropped.
const MaxLines = 100000

// tailLines is how many of the last lines error messages quote, and
// tailBytes how much of a drained child's output is kept for them.
const (
	tailLines = 5
	tailBytes = 8 << 10
	readSize  = 64 << 10
)

// Child is a started process. One goroutine owns it (start and wait),
// another reads its output; Stop ends both.
type Child struct {
	name string
	text func(string) string
	cmd  *exec.Cmd

	exited  chan struct{} // closed once Wait returned
	waitErr error         // valid after exited
	eof     chan struct{} // closed once the output is fully read
	out     *os.File      // our read end; the reader closes it

	drainAfter *regexp.Regexp

	mu      sync.Mutex
	lines   []Line
	grew    chan struct{} // closed and replaced when a line arrives
	drained bool          // past DrainAfter's line: only raw is kept
	raw     []byte        // with DrainAfter, the last tailBytes of output

	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Start starts s with its stdout and stderr on one pipe that the Child reads.
//
// Pdeathsig kills the child if we die without cleaning up (SIGKILL, a
// crash). The kernel sends it when the *thread* that forked the child ends,
// not the process, so the fork happens on a goroutine locked to its thread
// for as long as the child lives: the Go runtime cannot retire that thread
// under it.
func Start(s Spec) (*Child, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	cmd := exec.Command(s.Path, s.Args...)
	// An *os.File is inherited as is: no copying goroutine in between, and
	// the child's own children (demo's workers) write to the same pipe.
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = s.ExtraFiles
	cmd.Dir = s.Dir
	// Without the variables a user sets for their own servers: a tool's
	// children are configured by their command lines alone.
	cmd.Env = append(contract.WithoutConfigEnv(os.Environ()), s.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		// Own process group: a terminal's Ctrl+C reaches only us, and we
		// stop the children in order (a second SIGINT would make demo serve
		// kill its workers instead of draining them).
		Setpgid: true,
	}
	c := &Child{
		name:       s.Name,
		text:       s.Text,
		drainAfter: s.DrainAfter,
		cmd:        cmd,
		exited:     make(chan struct{}),
		eof:        make(chan struct{}),
		out:        outR,
		grew:       make(chan struct{}),
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
	outW.Close() // the child has its copy; ours would hide EOF
	if err != nil {
		outR.Close()
		c.wg.Wait()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.read()
	}()
	return c, nil
}

func (c *Child) read() {
	defer close(c.eof)
	defer c.out.Close()
	var src io.Reader = c.out
	if c.drainAfter != nil {
		// Everything read goes to the tail as well, so that the switch to
		// draining loses nothing the scanner had buffered.
		src = io.TeeReader(c.out, tailWriter{c})
	}
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, readSize), 1<<20)
	for sc.Scan() {
		l := Line{At: time.Now(), Raw: sc.Text()}
		l.Text = l.Raw
		if c.text != nil {
			l.Text = c.text(l.Raw)
		}
		last := c.drainAfter != nil && c.drainAfter.MatchString(l.Raw)
		c.mu.Lock()
		if len(c.lines) < MaxLines {
			c.lines = append(c.lines, l)
		}
		c.drained = last
		close(c.grew)
		c.grew = make(chan struct{})
		c.mu.Unlock()
		if last {
			break
		}
	}
	// Draining, or a line too long to scan: either way the reading goes on,
	// since a child writing to a closed pipe would die of SIGPIPE.
	if !c.drained && !errors.Is(sc.Err(), bufio.ErrTooLong) {
		return // EOF, or the read deadline Stop sets
	}
	buf := make([]byte, readSize)
	for {
		n, err := c.out.Read(buf)
		if c.drainAfter != nil {
			c.keepRaw(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// tailWriter keeps what the scanner reads in the raw tail.
type tailWriter struct{ c *Child }

func (w tailWriter) Write(p []byte) (int, error) {
	w.c.keepRaw(p)
	return len(p), nil
}

// keepRaw appends p to the raw tail, which holds at most tailBytes.
func (c *Child) keepRaw(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) >= tailBytes {
		c.raw = append(c.raw[:0], p[len(p)-tailBytes:]...)
		return
	}
	if over := len(c.raw) + len(p) - tailBytes; over > 0 {
		c.raw = append(c.raw[:0], c.raw[over:]...)
	}
	c.raw = append(c.raw, p...)
}

// Name is the Spec's Name.
func (c *Child) Name() string { return c.name }

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Count is how many lines were kept so far; pass it as WaitLine's from to
// look only at what comes next.
func (c *Child) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// Lines returns a copy of every line kept so far. After Stop it is the
// whole output (up to MaxLines).
func (c *Child) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...)
}

// WaitLine waits for a line at or after index from whose Text matches re.
// It fails when the child's output ends first (it exited), ctx ends or
// timeout passes.
func (c *Child) WaitLine(ctx context.Context, re *regexp.Regexp, from int, timeout time.Duration) (Match, error) {
	var groups []string
	m, err := c.WaitFor(ctx, fmt.Sprintf("a line matching %q", re), func(l Line) bool {
		groups = re.FindStringSubmatch(l.Text)
		return groups != nil
	}, from, timeout)
	m.Groups = groups
	return m, err
}

// WaitFor is WaitLine for any test of a line: match, which must not call
// c, says whether a line is the one; what names it in errors ("a line
// matching …"). The Match has no Groups.
func (c *Child) WaitFor(ctx context.Context, what string, match func(Line) bool, from int, timeout time.Duration) (Match, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := from
	for {
		c.mu.Lock()
		for ; seen < len(c.lines); seen++ {
			if l := c.lines[seen]; match(l) {
				c.mu.Unlock()
				return Match{Index: seen, Line: l}, nil
			}
		}
		grew := c.grew
		c.mu.Unlock()
		select {
		case <-grew:
		case <-c.eof:
			if seen < c.Count() {
				continue // one last look at what arrived before EOF
			}
			<-c.exited
			return Match{}, fmt.Errorf("%s exited (%v) before %s%s", c.name, c.waitErr, what, c.Tail())
		case <-ctx.Done():
			return Match{}, ctx.Err()
		case <-deadline.C:
			return Match{}, fmt.Errorf("%s: no %s within %v%s", c.name, strings.TrimPrefix(what, "a "), timeout, c.Tail())
		}
	}
}

// Exited is closed once the child has exited and been waited for.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// ExitCode is the child's exit code once it exited (-1 if a signal ended
// it), and -1 while it runs.
func (c *Child) ExitCode() int {
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Signal sends sig to the child (not its process group): SIGHUP to make a
// server reload, say. It fails with os.ErrProcessDone once the child has
// exited.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// ExitErr reports how the child exited: nil while it runs or after exit
// status 0, otherwise an error wrapping Wait's (an *exec.ExitError) that
// quotes the last lines of output.
func (c *Child) ExitErr() error {
	select {
	case <-c.exited:
	default:
		return nil
	}
	if c.waitErr == nil {
		return nil
	}
	return fmt.Errorf("%s: %w%s", c.name, c.waitErr, c.Tail())
}

// Tail quotes the last few lines' Text (raw once drained), one per line,
// indented: for error messages, ours and the caller's.
func (c *Child) Tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	texts := make([]string, 0, tailLines)
	if c.drained {
		texts = c.rawLines()
	} else {
		for _, l := range c.lines {
			texts = append(texts, l.Text)
		}
	}
	var b strings.Builder
	for _, t := range texts[max(0, len(texts)-tailLines):] {
		b.WriteString("\n    ")
		b.WriteString(t)
	}
	return b.String()
}

// rawLines splits the raw tail into lines, without a first line cut in half
// by the tail's start. Call it with mu held.
func (c *Child) rawLines() []string {
	t := strings.TrimRight(string(c.raw), "\n")
	if len(c.raw) == tailBytes {
		_, t, _ = strings.Cut(t, "\n")
	}
	if t == "" {
		return nil
	}
	return strings.Split(t, "\n")
}

// Stop asks the child to exit (SIGTERM), kills it after grace, and waits
// for it and for the end of its output. It reports an error when the child
// had to be killed or something kept its output open; the exit status is
// ExitErr's business, since some servers exit non-zero on SIGTERM. Only the
// first call acts (later ones return its result), so callers can both defer
// Stop and call it early.
func (c *Child) Stop(grace time.Duration) error {
	c.stopOnce.Do(func() { c.stopErr = c.terminate(grace) })
	return c.stopErr
}

func (c *Child) terminate(grace time.Duration) error {
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
	// EOF comes once every process holding the pipe is gone. A grandchild
	// that outlived its parent must not keep us waiting: stop reading.
	t := time.NewTimer(time.Second)
	select {
	case <-c.eof:
	case <-t.C:
		_ = c.out.SetReadDeadline(time.Now())
		<-c.eof
		err = errors.Join(err, fmt.Errorf("%s: something still holds its output after it exited", c.name))
	}
	t.Stop()
	c.wg.Wait()
	return err
}
