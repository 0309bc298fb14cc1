// Package worker is one worker process: the app (routes, the three handler
// modes, the article's log lines) on top of a single event loop, plus the
// process plumbing a master expects from a worker — accept on the inherited
// socket, say when ready, drain on SIGTERM, and die with the master.
package worker

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
	"demo/eventloop"
)

// Config is what `demo worker` takes; the master builds it from `demo serve`'s flags.
type Config struct {
	Index, Total    int    // 1-based position among the master's workers
	Mode            Mode   // what GET / does
	External        string // base URL of the slow external API
	Calls           int    // sequential external calls per request
	ExternalTimeout time.Duration
	ThreadpoolSize  int
	AccessLog       bool
	Logger          *zap.Logger
}

// ErrNotStartedByMaster is returned when `demo worker` is run by hand.
var ErrNotStartedByMaster = errors.New("demo worker is started by 'demo serve'; run that instead")

// StartupError means the worker could not start at all; the process should
// exit with contract.ExitStartupFailure so the master stops instead of
// respawning it forever.
type StartupError struct{ Err error }

func (e *StartupError) Error() string { return "worker start-up failed: " + e.Err.Error() }
func (e *StartupError) Unwrap() error { return e.Err }

// Validate checks what can be checked before anything starts.
func (c *Config) Validate() error {
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return err
	}
	if err := ValidateExternal(c.External); err != nil {
		return err
	}
	if c.Calls < 0 {
		return fmt.Errorf("--calls must be 0 or more, got %d", c.Calls)
	}
	if c.ThreadpoolSize < 1 {
		return fmt.Errorf("--threadpool-size must be at least 1, got %d", c.ThreadpoolSize)
	}
	return nil
}

// ValidateExternal rejects an --external URL the async client could not call.
func ValidateExternal(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("--external %q: %w", raw, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("--external %q: want http://host[:port][/path]", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("--external %q: bad port %q", raw, p)
		}
	}
	return nil
}

// Run serves until the master asks the worker to stop (SIGTERM/SIGINT) and
// every in-flight request has finished. It returns ErrNotStartedByMaster
// when not started by a master and a *StartupError when the inherited
// descriptors are unusable.
func Run(cfg Config) error {
	if os.Getenv(contract.EnvMasterPID) != strconv.Itoa(os.Getppid()) {
		return ErrNotStartedByMaster
	}
	if err := cfg.Validate(); err != nil {
		return &StartupError{err}
	}
	if err := checkListener(contract.ListenerFD); err != nil {
		return &StartupError{err}
	}
	name := fmt.Sprintf("demo-worker-%d", cfg.Index)
	// /proc/self/comm names the process for `ps -o comm` and top; the loop
	// thread names itself too (see serve) so `top -H` shows which thread it is.
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)

	log := cfg.Logger
	status := os.NewFile(contract.StatusFD, "status")
	defer status.Close()

	lifeline, err := openLifeline()
	if err != nil {
		return &StartupError{err}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer lifeline.Close() // unblocks watchLifeline's Read: a clean exit is not the master dying
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchLifeline(lifeline, log)
	}()

	loop, err := eventloop.New()
	if err != nil {
		return &StartupError{err}
	}
	defer loop.Close()
	app := newApp(loop, cfg, log)
	srv, err := eventloop.NewServer(loop, contract.ListenerFD, app.serverConfig(), app.serve)
	if err != nil {
		return &StartupError{err}
	}

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

	if _, err := status.Write(contract.Msg{Kind: contract.Ready}.Encode()); err != nil {
		return &StartupError{fmt.Errorf("tell master ready: %w", err)}
	}
	log.Info(fmt.Sprintf("Worker %d/%d ready, mode %s (loop thread %s)", cfg.Index, cfg.Total, cfg.Mode, name))
	loop.Post(func() { setThreadName(name) })
	if err := loop.Run(); err != nil {
		return fmt.Errorf("event loop: %w", err)
	}
	log.Info(fmt.Sprintf("Finished server process [%d]", os.Getpid()))
	return nil
}

// checkListener makes sure fd is a listening stream socket, so a worker
// started with the wrong fd 3 fails loudly instead of serving nothing.
func checkListener(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("fd %d is not a socket: %w", fd, err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil || typ != unix.SOCK_STREAM || acc != 1 {
		return fmt.Errorf("fd %d is not a listening stream socket", fd)
	}
	return nil
}

// openLifeline wraps the lifeline pipe in a pollable *os.File, so that Close
// interrupts a pending Read.
func openLifeline() (*os.File, error) {
	if err := unix.SetNonblock(contract.LifelineFD, true); err != nil {
		return nil, fmt.Errorf("lifeline fd %d: %w", contract.LifelineFD, err)
	}
	return os.NewFile(contract.LifelineFD, "lifeline"), nil
}

// watchLifeline waits for the master to go away. It runs beside the loop,
// not on it, so a worker whose loop is blocked still dies with its master.
// PR_SET_PDEATHSIG normally kills us first; this is the second line.
func watchLifeline(f *os.File, log *zap.Logger) {
	var buf [1]byte
	for {
		_, err := f.Read(buf[:])
		if errors.Is(err, os.ErrClosed) {
			return // we are exiting on our own
		}
		if err != nil { // io.EOF: the master's write end is gone
			log.Warn("master process gone, exiting")
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
