package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
)

// process is a started worker process as the owner goroutine drives it:
// the one seam between the slot policies and the operating system, as
// tableflip's env.newProc is. Run's processes are execProcess; the table
// tests drive the policies with a fake one, step by step, in microseconds.
type process interface {
	pid() int
	// signal sends sig; a process that has exited already is no error.
	signal(sig syscall.Signal) error
	// ping writes one contract.Ping on the lifeline and never waits.
	ping()
	// waited is called once the process has been reaped (evExited):
	// nothing of it is left to ping or signal, and its status pipe gets
	// readerGrace to reach EOF.
	waited()
	// exit says how it ended; valid after its evExited.
	exit() exitInfo
}

// exitInfo is how a process ended.
type exitInfo struct {
	code int    // its exit code; -1 if a signal ended it
	desc string // as os.ProcessState puts it: "exit status 3", "signal: killed"
}

// startFunc starts the process for c with argv. Once it returns, every
// event about the process — its messages, its exit, the end of its status
// pipe — reaches the owner goroutine as an event about c.
type startFunc func(c *child, argv []string) (process, error)

// execProcess is a worker process re-executed from Config.Executable with
// the fds of contract.go.
type execProcess struct {
	c  *child
	id int // its pid, kept: proc.Release sets proc.Pid to -1
	// proc is for signals only: the reaper waits for it, never proc.Wait.
	proc *os.Process
	// statusR is the master's end of the status pipe; the reader goroutine
	// owns and closes it. lifelineW is the only write end of the worker's
	// lifeline: the master pings on it, and the kernel closes it if the
	// master dies, which the worker sees as EOF.
	statusR   *os.File
	lifelineW *os.File
	ex        exitInfo // set by reap
}

// startProcess is Run's startFunc: it starts a worker per contract.go, hands
// it to the reaper, whose exits the owner goroutine turns into events, and
// starts the goroutine that turns its status pipe into events.
func (s *supervisor) startProcess(c *child, argv []string) (process, error) {
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("status pipe: %w", err)
	}
	lifelineR, lifelineW, err := os.Pipe()
	if err != nil {
		statusR.Close()
		statusW.Close()
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	attr := &os.ProcAttr{
		Env: s.env,
		// Order is the contract: stdio, then fd 3, 4, 5. Stdout and
		// stderr are inherited as they are: no copying goroutine. With
		// ReusePort the listener is nil and fd 3 stays closed in the
		// child: it binds its own. Every other fd of ours is O_CLOEXEC,
		// so no worker sees another worker's pipe ends.
		Files: []*os.File{s.devNull, s.cfg.Stdout, s.cfg.Stderr, s.cfg.Listener, statusW, lifelineR},
		Sys: &syscall.SysProcAttr{
			// Own process group: a terminal's Ctrl+C reaches only the
			// master, which then drains the workers in order.
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}
	proc, err := s.spawner.start(s.cfg.Executable, argv, attr, func(waited time.Duration) {
		s.continueStoppedSpawn(c.name(), waited)
	})
	// The child has its own copies now. Keeping statusW would hide the
	// worker's EOF from us; lifelineR is no use to the master.
	statusW.Close()
	lifelineR.Close()
	if err != nil {
		statusR.Close()
		lifelineW.Close()
		return nil, err
	}
	p := &execProcess{c: c, id: proc.Pid, proc: proc, statusR: statusR, lifelineW: lifelineW}
	s.reaper.add(p)
	// Read here, not in the goroutine: the owner writes c's other fields.
	name, pid := c.name(), proc.Pid
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.readStatusPipe(c, p.statusR, name, pid)
		s.events <- event{kind: evPipeClosed, c: c, err: err}
	}()
	return p, nil
}

func (p *execProcess) pid() int { return p.id }

func (p *execProcess) signal(sig syscall.Signal) error {
	// Process.Signal goes through a pidfd where the kernel has them; by
	// pid otherwise, which is as safe here: the owner goroutine both
	// signals and reaps, so the pid is never signalled once reaped.
	err := p.proc.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// ping writes without ever blocking the owner goroutine: a worker that
// stopped reading fills the pipe, and then pings are simply dropped (its
// silence is what the healthcheck catches). A worker that is gone gives
// EPIPE, which Go reports as an error instead of raising SIGPIPE for fds
// other than stdout and stderr.
func (p *execProcess) ping() {
	rc, err := p.lifelineW.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Write(func(fd uintptr) bool {
		for {
			_, err := unix.Write(int(fd), []byte{contract.Ping})
			if !errors.Is(err, unix.EINTR) {
				return true // done, whatever happened: never wait for room
			}
		}
	})
}

func (p *execProcess) waited() {
	_ = p.proc.Release() // its pidfd
	p.lifelineW.Close()
	_ = p.statusR.SetReadDeadline(time.Now().Add(readerGrace))
}

func (p *execProcess) exit() exitInfo { return p.ex }

// readStatusPipe forwards each message on statusR as an event about c
// until EOF, which comes when the worker exits (the master closed its copy
// of the write end).
func (s *supervisor) readStatusPipe(c *child, statusR *os.File, name string, pid int) error {
	defer statusR.Close()
	r := contract.NewReader(statusR)
	for {
		msg, err := r.Next()
		if err == io.EOF {
			return nil
		}
		var numErr *strconv.NumError
		if errors.As(err, &numErr) {
			s.log.Warn("bad status line from worker", zap.String("worker", name), zap.Int("pid", pid), zap.Error(err))
			continue
		}
		if err != nil {
			// Keep reading to EOF anyway: a worker writing into a pipe
			// nobody drains would block once the pipe buffer is full.
			_, _ = io.Copy(io.Discard, statusR)
			return err
		}
		s.events <- event{kind: evMsg, c: c, msg: msg}
	}
}

// workerEnv is the master's environment plus contract.EnvMasterPID, which a
// worker checks against its parent pid.
func workerEnv(masterPID int) []string {
	prefix := contract.EnvMasterPID + "="
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return append(env, fmt.Sprintf("%s%d", prefix, masterPID))
}

// closeInheritedOnExec marks every descriptor above stderr close-on-exec.
// Go opens its own files that way, but descriptors the master inherited
// without it (a shell's or a CI runner's) would otherwise reach every worker,
// which must see exactly stdio plus the contract's fds 3-5 (like Python's
// close_fds=True). ExtraFiles are dup'ed into the child regardless.
func closeInheritedOnExec() error {
	names, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range names {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		// EBADF is expected: the directory's own fd is gone by now.
		unix.CloseOnExec(fd)
	}
	return nil
}

// spawner starts every child from one goroutine locked to its OS thread for
// the whole of Run. Pdeathsig fires when the *thread* that forked the child
// exits, not the process (golang/go#27505); a random goroutine's thread may be
// torn down by the runtime at any time, killing healthy workers with it.
// Being one known thread also tells which processes it forked
// (spawnguard.go).
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
	tid  int // the thread's id, set by run
	// startProcess is os.StartProcess and check is spawnCheck; a test's
	// stand in for a spawn that does not return.
	startProcess func(path string, argv []string, attr *os.ProcAttr) (*os.Process, error)
	check        time.Duration
}

type spawnReq struct {
	path  string
	argv  []string
	attr  *os.ProcAttr
	reply chan spawnReply
}

type spawnReply struct {
	proc *os.Process
	err  error
}

func startSpawner() *spawner {
	sp := &spawner{reqs: make(chan spawnReq), done: make(chan struct{}), startProcess: os.StartProcess, check: spawnCheck}
	sp.run()
	return sp
}

// run starts the spawner's goroutine and waits until its thread is set up.
func (sp *spawner) run() {
	ready := make(chan int)
	go sp.loop(ready)
	sp.tid = <-ready
}

func (sp *spawner) loop(ready chan<- int) {
	defer close(sp.done)
	// Never unlocked: the thread exits with this goroutine, once Run has
	// reaped every child, so no Pdeathsig can fire early.
	runtime.LockOSThread()
	blockJobStops()
	ready <- unix.Gettid()
	for req := range sp.reqs {
		proc, err := sp.startProcess(req.path, req.argv, req.attr)
		req.reply <- spawnReply{proc, err}
	}
}

// start starts a process, from the spawner's thread. Until that returns,
// slow is called every sp.check with the time waited so far.
func (sp *spawner) start(path string, argv []string, attr *os.ProcAttr, slow func(waited time.Duration)) (*os.Process, error) {
	reply := make(chan spawnReply, 1)
	sp.reqs <- spawnReq{path: path, argv: argv, attr: attr, reply: reply}
	began := time.Now()
	tick := time.NewTicker(sp.check)
	defer tick.Stop()
	for {
		select {
		case r := <-reply:
			return r.proc, r.err
		case <-tick.C:
			slow(time.Since(began))
		}
	}
}

// stop ends the spawner goroutine and waits for it.
func (sp *spawner) stop() {
	close(sp.reqs)
	<-sp.done
}
