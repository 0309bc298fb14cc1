// Package worker is one worker process: the app (the routes of an app file
// or of the built-in one, their steps, the article's log lines) on top of
// a single event loop, plus the
// process plumbing a master expects from a worker — accept on the inherited
// socket (or its own SO_REUSEPORT one), say when ready, beat from the loop,
// answer pings beside it, ask to be recycled after --limit-max-requests,
// drain on SIGTERM, and die with the master.
package worker

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/appspec"
	"demo/contract"
	"demo/eventloop"
	"demo/sockets"
)

// ErrNotStartedByMaster is returned when `demo worker` is run by hand.
var ErrNotStartedByMaster = errors.New("demo worker is started by 'demo serve'; run that instead")

// StartupError means the worker could not start at all; the process should
// exit with contract.ExitStartupFailure so the master stops instead of
// respawning it forever.
type StartupError struct{ Err error }

func (e *StartupError) Error() string { return "worker start-up failed: " + e.Err.Error() }
func (e *StartupError) Unwrap() error { return e.Err }

// LoadApp is the app a worker with cfg serves: its app file, or the
// built-in app for its mode and calls.
func LoadApp(cfg Config) (*appspec.App, error) {
	if cfg.AppFile != "" {
		return appspec.Load(cfg.AppFile)
	}
	return appspec.Builtin(cfg.Mode, cfg.Calls)
}

// Run serves until the master asks the worker to stop (SIGTERM/SIGINT) and
// every in-flight request has finished. It returns ErrNotStartedByMaster
// when not started by a master and a *StartupError when the inherited
// descriptors (or its own listening socket) are unusable.
func Run(cfg Config) error {
	if os.Getenv(contract.EnvMasterPID) != strconv.Itoa(os.Getppid()) {
		return ErrNotStartedByMaster
	}
	if err := cfg.Validate(); err != nil {
		return &StartupError{err}
	}
	spec, err := LoadApp(cfg)
	if err != nil {
		return &StartupError{err}
	}
	ln, err := openListener(cfg)
	if err != nil {
		return &StartupError{err}
	}
	defer ln.close()
	name := fmt.Sprintf("demo-worker-%d", cfg.Index)
	// /proc/self/comm names the process for `ps -o comm` and top; the loop
	// thread names itself too (see below) so `top -H` shows which thread it is.
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)

	log := cfg.Logger
	status, err := openStatusPipe(contract.StatusFD)
	if err != nil {
		return &StartupError{err}
	}
	defer status.close() // deferred before wg.Wait, so it runs after the lifeline goroutine is done with it

	lifeline, err := openLifeline()
	if err != nil {
		return &StartupError{err}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer lifeline.Close() // unblocks watchLifeline's Read: a clean exit is not the master dying

	loop, err := eventloop.New()
	if err != nil {
		return &StartupError{err}
	}
	defer loop.Close()
	app := newApp(loop, cfg, spec, log, status)
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchLifeline(lifeline, status, log, &app.live)
	}()
	// SIGABRT (the master's --timeout) is answered beside the loop too.
	stopAbort := make(chan struct{})
	defer close(stopAbort)
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchAbort(loop, status, log, stopAbort)
	}()
	app.listener = ln
	if cfg.SlowCallback > 0 {
		loop.Watch(eventloop.WatchConfig{Threshold: cfg.SlowCallback, Report: app.reportStall})
	}
	srvCfg := app.serverConfig()
	srvCfg.ExclusiveListener = ln.owned
	srvCfg.EpollExclusive = cfg.EpollExclusive && !ln.owned
	srvCfg.Trace = app.traceHook()
	srv, err := eventloop.NewServer(loop, ln.fd, srvCfg, app.serve)
	if err != nil {
		return &StartupError{err}
	}
	app.srv = srv

	// Signals arrive on their own goroutine and only ever reach the loop as a
	// posted callback, so a blocked loop drains once it is free again.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopSignals:
				return
			case <-sigs:
				loop.Post(func() { app.drain(srv) })
			}
		}
	}()

	if err := status.send(contract.Msg{Kind: contract.Ready}); err != nil {
		return &StartupError{fmt.Errorf("tell master ready: %w", err)}
	}
	serving := "mode " + string(cfg.Mode)
	if cfg.AppFile != "" {
		serving = "app " + cfg.AppFile
	}
	log.Info(contract.WorkerReadyMsg(cfg.Index, cfg.Total, serving, name), contract.WorkerReadyFields(contract.WorkerName(cfg.Index, cfg.Total)))
	_ = log.Sync() // say it now, not when the logger's timer next fires
	loop.Post(func() { setThreadName(name) })
	// The first Beat goes out now, from the goroutine about to run the
	// loop: posted, it could come after a request that blocks the loop at
	// once, and the master times out only a loop it has heard beat.
	app.heartbeat()
	if err := loop.Run(); err != nil {
		return fmt.Errorf("event loop: %w", err)
	}
	app.beat()
	log.Info(fmt.Sprintf("Finished server process [%d]", os.Getpid()))
	return nil
}

// listener is the socket the worker accepts on: the master's, inherited as
// fd 3, or (owned) its own SO_REUSEPORT socket, which the worker closes as
// soon as it starts draining so the kernel stops routing connections to it.
type listener struct {
	fd    int
	owned bool
}

func openListener(cfg Config) (*listener, error) {
	if cfg.ReusePortAddr == "" {
		if err := sockets.CheckListening(contract.ListenerFD); err != nil {
			return nil, err
		}
		return &listener{fd: contract.ListenerFD}, nil
	}
	fd, err := listenReusePort(cfg.ReusePortAddr, cfg.Backlog)
	if err != nil {
		return nil, err
	}
	return &listener{fd: fd, owned: true}, nil
}

// close closes an owned socket, once; the inherited one stays the master's.
func (l *listener) close() {
	if l.owned && l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
}

// openLifeline wraps the lifeline pipe in a pollable *os.File, so that Close
// interrupts a pending Read.
func openLifeline() (*os.File, error) {
	if err := unix.SetNonblock(contract.LifelineFD, true); err != nil {
		return nil, fmt.Errorf("lifeline fd %d: %w", contract.LifelineFD, err)
	}
	return os.NewFile(contract.LifelineFD, "lifeline"), nil
}

// watchLifeline answers the master's pings and waits for it to go away. It
// runs beside the loop, not on it: each Ping gets an Alive, with the loop's
// counters as last published, even while the loop is blocked (the process
// lives; the loop's own Beat says whether it moves), and a worker whose
// loop is blocked still dies with its master.
// PR_SET_PDEATHSIG normally kills us first; the lifeline's EOF is the second
// line.
func watchLifeline(f *os.File, status *statusPipe, log *zap.Logger, live *liveCounts) {
	var buf [64]byte
	for {
		n, err := f.Read(buf[:])
		for _, b := range buf[:n] {
			if b != contract.Ping {
				continue
			}
			// A full pipe drops the answer: the master is not reading, and
			// the next ping gets its own.
			alive := contract.Msg{Kind: contract.Alive, Value: time.Now().UnixNano(), Text: live.text()}
			if err := status.send(alive); err != nil && !errors.Is(err, errPipeFull) {
				log.Debug("answer ping", zap.Error(err))
			}
		}
		if errors.Is(err, os.ErrClosed) {
			return // we are exiting on our own
		}
		if err != nil { // io.EOF: the master's write end is gone
			log.Warn("master process gone, exiting")
			_ = log.Sync()
			// The loop may be blocked, so nothing can unwind it: end now.
			_ = unix.Kill(os.Getpid(), unix.SIGKILL)
			return
		}
	}
}

// setThreadName names the calling OS thread (at most 15 bytes show).
func setThreadName(name string) {
	p, err := unix.BytePtrFromString(name)
	if err == nil {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0)
	}
}
