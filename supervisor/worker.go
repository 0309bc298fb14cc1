package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"demo/contract"
)

// State is where one worker process is in its life, as seen by the master.
// Allowed transitions:
//
//	Starting → Ready     it sent contract.Ready on the status pipe
//	Starting → Draining  shutdown, or its slot was removed (SIGTTOU), before it was ready
//	Ready    → Draining  the master sent it SIGTERM: shutdown, replaced by a
//	                     ready successor (SIGHUP, recycling) or its slot removed
//	Starting → Killed    not ready within the healthcheck timeout
//	Ready    → Killed    no Alive within the healthcheck timeout, or its loop
//	                     stalled longer than Config.Timeout (SIGABRT, then SIGKILL)
//	Draining → Killed    still draining at its deadline (SIGKILL)
//	any      → Killed    SIGQUIT, a second SIGINT/SIGTERM, or the graceful
//	                     shutdown timed out (SIGKILL to every worker)
//	any      → Exited    cmd.Wait returned and its status pipe hit EOF
//
// Health checks only judge a worker by its state (see judge): a Draining
// worker is never killed for a stalled loop or silence, only at its drain
// deadline, and a Killed one only gets the SIGKILL that follows SIGABRT.
//
// Exited is terminal: a replacement is a new worker in Starting.
type State int

const (
	// Starting: the process exists but has not said it is ready.
	Starting State = iota
	// Ready: the worker accepts connections.
	Ready
	// Draining: SIGTERM sent; it finishes in-flight requests and exits.
	Draining
	// Killed: the master sent SIGABRT or SIGKILL and waits for the exit.
	Killed
	// Exited: reaped; the master holds nothing of it any more.
	Exited
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	case Killed:
		return "killed"
	case Exited:
		return "exited"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// worker is one process in the table. Only the owner goroutine (the one in
// Run) reads or writes its fields; the two goroutines per worker only send
// events.
type worker struct {
	slot  *slot
	index int // 1-based slot index, fixed at spawn
	total int // number of slots when it was spawned (its argv says so)
	gen   int // supervisor.gen at spawn: SIGHUP replaces every older worker
	pid   int
	cmd   *exec.Cmd
	state State

	started   time.Time
	readyAt   time.Time
	lastAlive time.Time          // last contract.Alive (zero: none yet)
	lastBeat  time.Time          // last contract.Beat (zero: none yet)
	loop      contract.LoopStats // carried by the last Beat
	stalledBy string             // the worker's detector: what blocks its loop now
	// stallNoted is when the current stall was last reported as ongoing
	// (zero: not yet), so long stalls log at most every stallProgressEvery.
	stallNoted time.Time
	abortedAt  time.Time // SIGABRT sent for --timeout; SIGKILL follows after abortGrace
	drainBy    time.Time // SIGKILL if still draining then (zero: no deadline of its own)
	killedFor  string    // why the master killed it, for the reap log line

	// statusR is the master's end of the status pipe; the reader goroutine
	// owns and closes it. lifelineW is the only write end of the worker's
	// lifeline: the master pings on it, and the kernel closes it if the
	// master dies, which the worker sees as EOF.
	statusR   *os.File
	lifelineW *os.File

	waited     bool // cmd.Wait returned
	readerDone bool // status pipe drained to EOF (or given up on)
}

func (w *worker) name() string { return fmt.Sprintf("%d/%d", w.index, w.total) }

// alive reports whether the process may still be running, i.e. whether a
// signal could reach it.
func (w *worker) alive() bool { return !w.waited }

func (w *worker) signal(sig syscall.Signal) error {
	// Process.Signal goes through a pidfd, so it can never hit a recycled pid.
	err := w.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// spawn starts a worker for sl per contract.go and the two goroutines that
// turn its exit and its status lines into events. It neither records the
// worker in sl nor logs: the caller decides what the new process is for.
func (s *supervisor) spawn(sl *slot) (*worker, error) {
	index, total := sl.index, len(s.slots)
	argv := s.cfg.WorkerArgs(index, total)
	if len(argv) == 0 {
		return nil, fmt.Errorf("start worker %d/%d: WorkerArgs returned no argv", index, total)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start worker %d/%d: status pipe: %w", index, total, err)
	}
	lifelineR, lifelineW, err := os.Pipe()
	if err != nil {
		statusR.Close()
		statusW.Close()
		return nil, fmt.Errorf("start worker %d/%d: lifeline pipe: %w", index, total, err)
	}
	cmd := &exec.Cmd{
		Path:   s.cfg.Executable,
		Args:   argv,
		Env:    s.env,
		Stdout: s.cfg.Stdout, // *os.File: inherited directly, no copying goroutine
		Stderr: s.cfg.Stderr,
		// Order is the contract: fd 3, 4, 5. With ReusePort the listener
		// is nil and fd 3 stays closed in the child: it binds its own.
		// Every other fd of ours is O_CLOEXEC, so no worker sees another
		// worker's pipe ends.
		ExtraFiles: []*os.File{s.cfg.Listener, statusW, lifelineR},
		SysProcAttr: &syscall.SysProcAttr{
			// Own process group: a terminal's Ctrl+C reaches only the
			// master, which then drains the workers in order.
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}
	err = s.spawner.start(cmd)
	// The child has its own copies now. Keeping statusW would hide the
	// worker's EOF from us; lifelineR is no use to the master.
	statusW.Close()
	lifelineR.Close()
	if err != nil {
		statusR.Close()
		lifelineW.Close()
		return nil, fmt.Errorf("start worker %d/%d: %w", index, total, err)
	}

	w := &worker{
		slot:      sl,
		index:     index,
		total:     total,
		gen:       s.gen,
		pid:       cmd.Process.Pid,
		cmd:       cmd,
		state:     Starting,
		started:   time.Now(),
		statusR:   statusR,
		lifelineW: lifelineW,
	}
	s.procs = append(s.procs, w)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		s.events <- event{kind: evExited, w: w, err: err}
	}()
	go func() {
		defer s.wg.Done()
		err := s.readStatus(w)
		s.events <- event{kind: evStatusClosed, w: w, err: err}
	}()
	return w, nil
}

// readStatus forwards each status line as an event until EOF, which comes
// when the worker exits (the master closed its copy of the write end).
func (s *supervisor) readStatus(w *worker) error {
	defer w.statusR.Close()
	r := contract.NewReader(w.statusR)
	for {
		msg, err := r.Next()
		if err == io.EOF {
			return nil
		}
		var numErr *strconv.NumError
		if errors.As(err, &numErr) {
			s.log.Warn("bad status line from worker", zap.String("worker", w.name()), zap.Int("pid", w.pid), zap.Error(err))
			continue
		}
		if err != nil {
			// Keep reading to EOF anyway: a worker writing into a pipe
			// nobody drains would block once the pipe buffer is full.
			_, _ = io.Copy(io.Discard, w.statusR)
			return err
		}
		s.events <- event{kind: evMsg, w: w, msg: msg}
	}
}

// spawner starts every child from one goroutine locked to its OS thread for
// the whole of Run. Pdeathsig fires when the *thread* that forked the child
// exits, not the process (golang/go#27505); a random goroutine's thread may be
// torn down by the runtime at any time, killing healthy workers with it.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func startSpawner() *spawner {
	sp := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go sp.loop()
	return sp
}

func (sp *spawner) loop() {
	defer close(sp.done)
	// Never unlocked: the thread exits with this goroutine, once Run has
	// reaped every child, so no Pdeathsig can fire early.
	runtime.LockOSThread()
	for req := range sp.reqs {
		req.errc <- req.cmd.Start()
	}
}

func (sp *spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	sp.reqs <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
}

// stop ends the spawner goroutine and waits for it.
func (sp *spawner) stop() {
	close(sp.reqs)
	<-sp.done
}
