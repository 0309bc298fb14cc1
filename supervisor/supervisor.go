// Package supervisor is the master process: it adopts the listening socket
// package sockets opened (or, with SO_REUSEPORT, lets each worker bind its
// own), starts N
// worker processes by re-executing a given executable (it never imports the
// worker package; contract.go is the whole agreement), watches their health,
// restarts, scales and recycles them without dropping requests, and stops
// them on a signal — the Go counterpart of uvicorn's
// supervisors/multiprocess.py and gunicorn's arbiter.
//
// Structure follows cloudflare/tableflip and uvicorn: signals only enqueue,
// and one owner goroutine (the caller of Run) holds the worker table and
// dispatches every event — signal, worker exited, worker message, health
// tick, timer, snapshot query. The owner also reaps the workers, at
// SIGCHLD (reap.go), so no thread waits per worker. Processes start through
// one small seam (process.go), so that table tests drive the slot policies
// (replace.go, lifecycle.go) with a fake process, step by step.
package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
)

// Config describes what to supervise.
type Config struct {
	// Listener is the listening socket every worker accepts on (fd 3),
	// from package sockets (ListenTCP, ListenUnix, ListenFD or
	// ListenSystemd). Run takes
	// ownership and closes it; its own copy is closed when shutdown begins
	// (as gunicorn does), so once the workers are gone new connections are
	// refused instead of queueing for nobody. Nil if and only if ReusePort.
	Listener *os.File
	// ReusePort: there is no shared socket; each worker binds its own
	// SO_REUSEPORT socket (its argv, from WorkerArgs, says where) and fd 3
	// stays closed in it. The caller probes the address first with
	// sockets.ReservePort.
	ReusePort bool
	// UnixSocket is the path sockets.ListenUnix bound, if any: Run removes it when
	// shutdown begins (and on any return), unless the file there is no
	// longer the socket it found at start.
	UnixSocket string
	// Addr is shown in the "running on" line, e.g. "http://127.0.0.1:8000".
	Addr    string
	Workers int
	// MaxWorkers, if not 0, is the most workers the socket setup lets
	// share the listener (see main's --workers check): Run refuses more,
	// and SIGTTIN stops there.
	MaxWorkers int
	// GracefulTimeout bounds how long a worker may drain after SIGTERM —
	// at shutdown, or when a rolling restart, recycling or SIGTTOU retires
	// it — before it is killed (--timeout-graceful-shutdown). Zero means
	// no grace: killed at once, as gunicorn's --graceful-timeout 0 does.
	GracefulTimeout time.Duration
	// HealthcheckTimeout: a ready worker that answers no Ping for this
	// long, or a new one not ready within it, is killed and replaced
	// (--timeout-worker-healthcheck). It must be positive.
	HealthcheckTimeout time.Duration
	// Timeout: a worker whose event loop has not beaten for longer than
	// this is aborted (SIGABRT, then SIGKILL) and replaced (--timeout,
	// gunicorn's meaning). Zero turns it off: stalls are only reported.
	Timeout time.Duration
	// Executable is re-executed for every worker; empty means os.Executable().
	Executable string
	// WorkerArgs returns the full argv, argv[0] included (what ps shows),
	// for worker index (1-based) of total, the number of workers wanted
	// when it is spawned (SIGTTIN/SIGTTOU change it).
	WorkerArgs func(index, total int) []string
	Logger     *zap.Logger
	// Stderr and Stdout are the children's stdio, inherited as fds (no
	// copying goroutines). Nil means the master's own.
	Stderr, Stdout *os.File
	// Inspector, if set, answers snapshot queries while Run runs.
	Inspector *Inspector
}

// Defaults of the command line (Uvicorn's).
const (
	DefaultGracefulTimeout    = 30 * time.Second
	DefaultHealthcheckTimeout = 5 * time.Second
)

// startBatch bounds how many workers boot at once when Run starts them:
// the rest are spawned as those get ready, so that a large --workers count
// neither starves each boot of CPU past the healthcheck timeout nor keeps
// the owner goroutine from its signals and health checks meanwhile.
var startBatch = max(8, 4*runtime.GOMAXPROCS(0))

// readerGrace is how long the status reader may keep going after its process
// exited. EOF normally comes at once; only a grandchild that inherited fd 4
// could keep the pipe open, and that must not keep Run from returning.
const readerGrace = time.Second

// handledSignals are the signals Run subscribes to; handleSignal dispatches
// them, and SIGTTOU too, once the terminal watcher (jobcontrol.go) has
// told a command from the terminal's own.
var handledSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT,
	syscall.SIGHUP, syscall.SIGTTIN,
}

// Run supervises until a signal ends it. It returns nil after a graceful
// shutdown (SIGINT/SIGTERM, even if stragglers had to be killed at the
// timeout) and an error after a forced one (SIGINT during the graceful
// shutdown, SIGQUIT), when a worker fails during start-up, or when one
// exits with contract.ExitStartupFailure where it would otherwise be
// respawned.
//
// Signals while running: SIGHUP restarts every worker, one at a time, each
// replacement ready before its predecessor drains; SIGTTIN adds a worker;
// SIGTTOU retires the last one (never below one). During a graceful
// shutdown, SIGTERM again changes nothing (tools like timeout(1) repeat
// it), SIGINT again (Ctrl+C twice) forces it, as in Uvicorn.
//
// Run reaps the workers it started, and only those: the caller may have
// children of its own and wait for them, but must not wait for any child
// (wait4(-1)) or ignore SIGCHLD while Run runs.
func Run(cfg Config) error {
	if cfg.Listener != nil {
		defer cfg.Listener.Close() // ours now, whatever happens
	}
	if cfg.Inspector != nil {
		defer cfg.Inspector.stopped() // queries fail from now on
	}
	if err := cfg.fill(); err != nil {
		return err
	}
	sock := watchSocketFile(cfg.UnixSocket)
	defer sock.remove()
	if cfg.Listener != nil {
		ln, err := adoptListener(cfg.Listener)
		if err != nil {
			return err
		}
		defer ln.Close()
		cfg.Listener = ln
	}
	s := newSupervisor(cfg, sock)
	s.env = workerEnv(s.pid)
	s.start = s.startProcess
	return s.run()
}

// newSupervisor is Run's state before anything started; s.start is left
// for the caller to set.
func newSupervisor(cfg Config, sock *socketFile) *supervisor {
	s := &supervisor{
		cfg:    cfg,
		log:    cfg.Logger,
		pid:    os.Getpid(),
		now:    time.Now,
		batch:  startBatch,
		events: make(chan event, 16),
		slots:  make([]*slot, cfg.Workers),
		sock:   sock,
		limits: healthLimits{
			healthcheck: cfg.HealthcheckTimeout,
			timeout:     cfg.Timeout,
			stallEvery:  stallProgressEvery,
		},
	}
	for i := range s.slots {
		s.slots[i] = &slot{index: i + 1}
	}
	return s
}

func (c *Config) fill() error {
	switch {
	case c.Listener == nil && !c.ReusePort:
		return errors.New("supervisor: no listener")
	case c.Listener != nil && c.ReusePort:
		return errors.New("supervisor: ReusePort workers bind their own sockets; Listener must be nil")
	case c.WorkerArgs == nil:
		return errors.New("supervisor: no WorkerArgs")
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("supervisor: find own executable: %w", err)
		}
		c.Executable = exe
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	return nil
}

type eventKind int

const (
	evMsg        eventKind = iota // a status line from a worker
	evExited                      // the reaper found it exited
	evPipeClosed                  // the status reader finished
)

// event is something about a worker for the owner to handle: a message or
// the end of its status pipe, from the worker's reader goroutine, or its
// exit, from the reaper.
type event struct {
	kind eventKind
	c    *child
	msg  contract.Msg
	err  error
}

// supervisor is Run's state; all of it belongs to the owner goroutine.
type supervisor struct {
	cfg     Config
	log     *zap.Logger
	pid     int
	env     []string
	events  chan event
	start   startFunc // startProcess, or a table test's fake
	now     func() time.Time
	batch   int // startBatch, or a table test's
	spawner *spawner
	reaper  *reaper
	devNull *os.File       // every worker's stdin
	awake   time.Time      // when the owner goroutine last woke (see woke)
	wg      sync.WaitGroup // the status readers
	sock    *socketFile
	limits  healthLimits

	slots    []*slot  // index i holds worker i+1; len is the wanted count
	children []*child // every process not yet reaped, in start order
	// unstarted are the slots whose first process Run has not spawned
	// yet: they start startBatch at a time (see startSome).
	unstarted []*slot
	// histories[i] is what worker index i+1 did across its processes.
	histories []*slotHistory

	// gen counts SIGHUPs; each worker remembers the gen it was spawned
	// in. While rolling, every slot whose cur is older than gen is
	// replaced, one at a time; a SIGHUP during a restart bumps gen, so
	// workers started before it are replaced (again) too.
	gen         int
	rolling     bool
	rollStarted time.Time
	rollSteps   int

	announced bool  // the "running on" line was logged
	stopping  bool  // shutdown began: no more respawns
	forced    bool  // every worker was sent SIGKILL
	err       error // what Run returns

	drain   *time.Timer // graceful-timeout deadline while stopping
	drainAt time.Time   // when drain fires
	respawn *time.Timer // earliest pending backed-off respawn
}

func (s *supervisor) run() error {
	s.log.Info(fmt.Sprintf("Started parent process [%d]", s.pid))
	// Before any spawn: the fds this process inherited must not reach workers.
	if err := closeInheritedOnExec(); err != nil {
		s.log.Debug("could not mark inherited fds close-on-exec", zap.Error(err))
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, handledSignals...)
	defer signal.Stop(sigs)

	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	defer devNull.Close()
	s.devNull = devNull
	s.reaper = newReaper()
	defer s.reaper.stop()
	term := watchTerminal()
	defer term.stop()
	s.spawner = startSpawner()
	defer s.spawner.stop()

	health := time.NewTicker(contract.HeartbeatInterval)
	defer health.Stop()

	var queries <-chan chan Snapshot
	if in := s.cfg.Inspector; in != nil {
		queries = in.reqs
	}

	s.startAll()
	for !s.stopping || len(s.children) > 0 {
		var handle func()
		select {
		case sig := <-sigs:
			handle = func() { s.handleSignal(sig) }
		case <-term.commands:
			handle = func() { s.handleSignal(syscall.SIGTTOU) }
		case ev := <-s.events:
			handle = func() { s.handleEvent(ev) }
		case <-s.reaper.sigchld:
			handle = func() {
				for _, p := range s.reaper.reap() {
					s.handleEvent(event{kind: evExited, c: p.c})
				}
			}
		case <-health.C:
			// Not the tick's time: that is when it was due, which after
			// the master was stopped is long past.
			handle = func() { s.checkHealth(s.now()) }
		case reply := <-queries:
			handle = func() { reply <- s.snapshot(s.now()) }
		case <-timerC(s.drain):
			handle = s.drainExpired
		case <-timerC(s.respawn):
			handle = s.respawnDue
		}
		// First, so that what queued up while the master did not run
		// (beats, readiness) is judged by clocks that skip that time.
		s.woke(s.now())
		handle()
		s.settle()
	}
	// Every worker was reaped after its status reader sent its last event;
	// this returns at once.
	s.wg.Wait()
	stopTimer(s.drain)
	stopTimer(s.respawn)
	s.log.Info(fmt.Sprintf("Stopping parent process [%d]", s.pid))
	return s.err
}

func (s *supervisor) handleSignal(sig os.Signal) {
	name := unix.SignalName(sig.(syscall.Signal))
	switch sig {
	case syscall.SIGINT, syscall.SIGTERM:
		switch {
		case !s.stopping:
			s.shutdown(nil, "received "+name)
		case s.forced:
		case sig == syscall.SIGTERM:
			// timeout(1), a supervisor or an impatient script repeats
			// SIGTERM: the requests in flight still deserve their answers.
			left := ""
			if s.drain != nil {
				left = fmt.Sprintf(", up to %s left", seconds(s.drainAt.Sub(s.now())))
			}
			procs := fmt.Sprintf("%d child processes", s.running())
			if s.running() == 1 {
				procs = "1 child process"
			}
			s.log.Info(fmt.Sprintf("Received SIGTERM again: still draining (%s%s); SIGINT or SIGQUIT stops them at once", procs, left))
		default:
			s.log.Warn("Received SIGINT during graceful shutdown: killing child processes")
			s.kill(errors.New("forced shutdown: SIGINT during graceful shutdown"))
		}
	case syscall.SIGQUIT:
		if !s.forced {
			s.log.Warn("Received SIGQUIT: killing child processes without draining")
			s.kill(errors.New("quit on SIGQUIT: workers killed without draining"))
		}
	case syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU:
		if s.stopping {
			s.log.Info(fmt.Sprintf("Received %s during shutdown: ignored", name))
			return
		}
		switch sig {
		case syscall.SIGHUP:
			s.log.Info("Received SIGHUP, restarting processes.")
			s.startRollingRestart()
		case syscall.SIGTTIN:
			s.log.Info("Received SIGTTIN, increasing the number of processes.")
			s.scaleUp()
		case syscall.SIGTTOU:
			s.log.Info("Received SIGTTOU, decreasing the number of processes.")
			s.scaleDown()
		}
	}
}

func (s *supervisor) handleEvent(ev event) {
	c := ev.c
	switch ev.kind {
	case evMsg:
		s.handleMsg(c, ev.msg)
	case evExited:
		c.waited = true
		c.proc.waited()
	case evPipeClosed:
		c.readerDone = true
		if ev.err != nil {
			s.log.Debug("status pipe closed with an error", zap.String("worker", c.name()), zap.Int("pid", c.pid), zap.Error(ev.err))
		}
	}
	// Forget it only once it exited and its status pipe is drained, so a
	// "ready" written just before an exit is always handled before the
	// exit itself.
	if c.waited && c.readerDone && c.state != Exited {
		s.reap(c)
	}
}

func (s *supervisor) handleMsg(c *child, msg contract.Msg) {
	if c.state == Exited {
		return
	}
	now := s.now()
	switch msg.Kind {
	case contract.Ready:
		if c.state != Starting {
			return
		}
		c.state = Ready
		c.readyAt = now
		s.log.Debug(fmt.Sprintf("Child process [%d] ready", c.pid), zap.String("worker", c.name()),
			zap.Duration("boot", now.Sub(c.started).Round(time.Millisecond)))
		if sl := c.slot; sl.next == c {
			s.promote(sl)
		}
		s.maybeAnnounce()
	case contract.Beat:
		s.beat(c, now, msg)
	case contract.Alive:
		s.alive(c, now, msg)
	case contract.Stall:
		s.stallReported(c, now, msg)
	case contract.StallEnd:
		s.stallEnded(c, now, msg)
	case contract.Stack:
		s.stackReceived(c, now, msg)
	case contract.Retire:
		s.retireRequested(c, msg.Value)
	default:
		s.log.Debug("unknown status message", zap.String("worker", c.name()), zap.String("kind", string(msg.Kind)))
	}
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// settle runs after every event: the next step of a rolling restart, the
// next workers of the start.
func (s *supervisor) settle() {
	s.advance()
	s.startSome()
}

// startAll starts the first process of every slot, a batch at a time.
func (s *supervisor) startAll() {
	s.unstarted = append([]*slot(nil), s.slots...)
	s.startSome()
}

// startSome spawns the first process of unstarted slots while fewer than
// s.batch workers are booting; the rest wait for those to get ready.
func (s *supervisor) startSome() {
	for len(s.unstarted) > 0 && !s.stopping {
		booting := 0
		for _, c := range s.children {
			if c.state == Starting {
				booting++
			}
		}
		if booting >= s.batch {
			return
		}
		sl := s.unstarted[0]
		s.unstarted = s.unstarted[1:]
		if sl.index > len(s.slots) || s.slots[sl.index-1] != sl || sl.cur != nil {
			continue // removed by SIGTTOU meanwhile
		}
		c, err := s.spawn(sl)
		if err != nil {
			s.shutdown(err, "a worker could not be started")
			return
		}
		sl.cur = c
		s.logStarted(c)
	}
}

// running counts the worker processes that may still run.
func (s *supervisor) running() int {
	n := 0
	for _, c := range s.children {
		if c.alive() {
			n++
		}
	}
	return n
}
