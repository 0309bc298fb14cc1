package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a server or tool the bench started. One goroutine owns the
// process (start and wait), another reads its stderr; stop ends both.
//
// It follows package experiment's child (unexported there): Pdeathsig from a
// thread that lives as long as the child, its own process group, and a stop
// that always waits.
type child struct {
	name string
	cmd  *exec.Cmd

	exited  chan struct{} // closed once Wait returned
	waitErr error         // valid after exited
	eof     chan struct{} // closed once stderr is fully read
	stderr  *os.File      // our read end; the reader closes it

	mu    sync.Mutex
	lines []line
	grew  chan struct{} // closed and replaced when a line arrives

	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// line is one stderr line and when the bench read it.
type line struct {
	at   time.Time
	text string
}

// spec describes a child to start.
type spec struct {
	name  string
	bin   string
	args  []string
	env   []string   // added to the bench's environment
	files []*os.File // become fds 3, 4, ... in the child
	dir   string
}

// startChild starts s with its stderr (and stdout) on a pipe we read.
//
// Pdeathsig kills the child if the bench dies without cleaning up. The
// kernel sends it when the *thread* that forked the child ends, so the fork
// happens on a goroutine locked to its thread for as long as the child lives.
func startChild(s spec) (*child, error) {
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stderr = stderrW
	cmd.Stdout = stderrW
	cmd.ExtraFiles = s.files
	cmd.Dir = s.dir
	if len(s.env) > 0 {
		cmd.Env = append(os.Environ(), s.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		// Own process group: a terminal's Ctrl+C reaches only the bench,
		// which then stops its children in order.
		Setpgid: true,
	}
	c := &child{
		name:   s.name,
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
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.read()
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) read() {
	defer close(c.eof)
	defer c.stderr.Close()
	sc := bufio.NewScanner(c.stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := line{at: time.Now(), text: sc.Text()}
		c.mu.Lock()
		// A long run must not grow without bound; the start-up lines
		// everybody waits for come first.
		if len(c.lines) < maxKeptLines {
			c.lines = append(c.lines, l)
		}
		close(c.grew)
		c.grew = make(chan struct{})
		c.mu.Unlock()
	}
}

const maxKeptLines = 100000

// count is how many lines were read so far; pass it as waitFor's from to
// look only at what comes next.
func (c *child) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// waitFor waits for a line at or after index from that matches re and
// returns its index, submatches and arrival time. It fails when the child
// exits first, ctx ends or timeout passes.
func (c *child) waitFor(ctx context.Context, re *regexp.Regexp, from int, timeout time.Duration) (int, []string, time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := from
	for {
		c.mu.Lock()
		for ; seen < len(c.lines); seen++ {
			if m := re.FindStringSubmatch(c.lines[seen].text); m != nil {
				at := c.lines[seen].at
				c.mu.Unlock()
				return seen, m, at, nil
			}
		}
		grew := c.grew
		c.mu.Unlock()
		select {
		case <-grew:
		case <-c.eof:
			if seen < c.count() {
				continue // one last look at what arrived before EOF
			}
			<-c.exited
			return 0, nil, time.Time{}, fmt.Errorf("%s exited (%v) before a line matching %q%s", c.name, c.waitErr, re, c.tail())
		case <-ctx.Done():
			return 0, nil, time.Time{}, ctx.Err()
		case <-deadline.C:
			return 0, nil, time.Time{}, fmt.Errorf("%s: no line matching %q within %v%s", c.name, re, timeout, c.tail())
		}
	}
}

// tail is the child's last few lines, for error messages.
func (c *child) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines[max(0, len(c.lines)-5):] {
		b.WriteString("\n    ")
		b.WriteString(l.text)
	}
	return b.String()
}

// stop asks the child to exit (SIGTERM), kills it after grace, and waits
// for it and its output. Only the first call acts, so callers can both defer
// it and call it early. It reports an error unless the child exited on its
// own after SIGTERM (any exit status: Python servers exit non-zero on it).
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

// The readers below look at /proc, the only honest source for another
// process's CPU time and memory.

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, fixed
// at 100 by the kernel ABI on every architecture Go supports on Linux.
const userHZ = 100

// cpuTime is the CPU time (user + system, all threads, dead ones included)
// that pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return parseStatCPU(string(raw))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so counting starts after its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc stat line: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// statusKiB reads a "Key:   1234 kB" field of /proc/<pid>/status, e.g.
// VmRSS or VmHWM (peak resident set size).
func statusKiB(pid int, key string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of %d: %w", key, pid, err)
	}
	return parseStatusKiB(string(raw), key)
}

func parseStatusKiB(status, key string) (int64, error) {
	for l := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(l, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc status", key)
}

// openFilesLimit is pid's soft RLIMIT_NOFILE, from /proc/<pid>/limits.
func openFilesLimit(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, fmt.Errorf("limits of %d: %w", pid, err)
	}
	for l := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("limits of %d: no Max open files", pid)
}

// childPids lists the children of pid. Each thread lists the children it
// forked, and demo's master forks from a thread of its own.
func childPids(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, f := range files {
		raw, _ := os.ReadFile(f) // a thread may exit meanwhile
		for _, field := range strings.Fields(string(raw)) {
			if n, err := strconv.Atoi(field); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// socketInodes is the set of socket inodes pid holds open.
func socketInodes(pid int) map[uint64]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	out := make(map[uint64]bool, len(entries))
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// establishedOn returns the inodes of established TCP sockets (IPv4) whose
// local port is port: the server side of each client connection.
func establishedOn(port int) ([]uint64, error) {
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("read /proc/net/tcp: %w", err)
	}
	return parseEstablished(string(raw), port), nil
}

// parseEstablished reads /proc/net/tcp lines:
//
//	sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
//	 0: 0100007F:1F90 0100007F:C8B2 01 00000000:00000000 00:00000000 00000000 0 0 12345 ...
func parseEstablished(table string, port int) []uint64 {
	var inodes []uint64
	for l := range strings.Lines(table) {
		f := strings.Fields(l)
		if len(f) < 10 || f[3] != "01" { // 01: TCP_ESTABLISHED
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if inode, err := strconv.ParseUint(f[9], 10, 64); err == nil && inode != 0 {
			inodes = append(inodes, inode)
		}
	}
	return inodes
}

// listenOverflows is the kernel's count of connections dropped because a
// listen queue was full (TcpExt ListenOverflows + ListenDrops counts every
// drop; ListenOverflows those of a full accept queue).
func listenOverflows() (overflows, drops uint64, err error) {
	raw, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/net/netstat: %w", err)
	}
	return parseListenDrops(string(raw))
}

// parseListenDrops finds ListenOverflows and ListenDrops in /proc/net/netstat,
// where a "TcpExt:" line of names is followed by a "TcpExt:" line of values.
func parseListenDrops(netstat string) (overflows, drops uint64, err error) {
	var names []string
	for l := range strings.Lines(netstat) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		found := 0
		for i := 1; i < len(f) && i < len(names); i++ {
			v, perr := strconv.ParseUint(f[i], 10, 64)
			switch names[i] {
			case "ListenOverflows":
				overflows, err, found = v, perr, found+1
			case "ListenDrops":
				drops, err, found = v, perr, found+1
			}
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/net/netstat: %w", err)
			}
		}
		if found != 2 {
			return 0, 0, errors.New("/proc/net/netstat: no ListenOverflows/ListenDrops")
		}
		return overflows, drops, nil
	}
	return 0, 0, errors.New("/proc/net/netstat: no TcpExt lines")
}

// selfCPU is the CPU time the bench process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
