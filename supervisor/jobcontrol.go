package supervisor

import (
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SIGTTOU has two senders. An operator sends it to retire a worker (the
// convention of gunicorn and uvicorn). A terminal with `stty tostop` sends
// it to a background job that writes to it, and, since the write is
// retried once the signal was handled, again at every retry. Taking every
// SIGTTOU for a command, a master put in the background (Ctrl+Z, then bg)
// scaled down to one worker at its next log line while its log writer spun
// a core on the retries.
//
// The terminal's SIGTTOU means for the master what it means for any job
// there: it stops, until fg (or bg, or SIGCONT) continues it — as a master
// that did not catch SIGTTOU would. Its workers go on serving meanwhile, in
// their own process groups, and pause.go keeps the time it was stopped
// from counting against them.
//
// os/signal does not say who sent a signal (no si_code). The terminal's is
// told from a command by what follows: while the master is a background
// job of a tostop terminal, SIGTTOU gets its default action back for a
// moment; if a write of ours was refused, its retry now stops the master,
// as the terminal meant (bash says "Stopped (tty output)"); if nothing
// stops it, the signal was a command.

// terminalWatch owns SIGTTOU: it stops the master for the terminal, and
// passes the others on to the owner goroutine as commands. A goroutine of
// its own, not the owner, so that a stop happens whoever in the master is
// retrying its write — a Config.Logger that writes on the owner goroutine
// included.
type terminalWatch struct {
	sigs     chan os.Signal
	commands chan struct{} // a SIGTTOU meant for the owner: retire a worker
	quit     chan struct{}
	done     chan struct{}
}

func watchTerminal() *terminalWatch {
	w := &terminalWatch{
		sigs:     make(chan os.Signal, 1),
		commands: make(chan struct{}),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	signal.Notify(w.sigs, syscall.SIGTTOU)
	go w.run()
	return w
}

// stop ends the goroutine, waits for it and unsubscribes from SIGTTOU.
func (w *terminalWatch) stop() {
	close(w.quit)
	<-w.done
	signal.Stop(w.sigs)
}

func (w *terminalWatch) run() {
	defer close(w.done)
	for {
		select {
		case <-w.quit:
			return
		case <-w.sigs:
		}
		if backgroundOnTostop() && w.stoppedByTerminal() {
			continue
		}
		select {
		case w.commands <- struct{}{}:
		case <-w.quit:
			return
		}
	}
}

// terminalRetry is how long a refused write takes to be retried: at once,
// the kernel restarts it as soon as the signal was handled. A SIGTTOU after
// which nothing stops the master within this was a command.
const terminalRetry = time.Second

// stoppedByTerminal gives SIGTTOU its default action until the master was
// stopped by it and continued (true), or terminalRetry passed (false).
//
// os/signal cannot give SIGTTOU its default action back once it was
// Notify'd (Reset leaves the runtime's handler in place, which then drops
// it), so the handler is swapped for SIG_DFL with rt_sigaction and put back
// after. Meanwhile nothing is delivered to w.sigs, so whatever comes there
// afterwards was sent afterwards: a SIGTTOU of the retries before the stop
// is never taken for a command once the master is in the foreground.
//
// Only the kernel stops the master here, never this goroutine: a stop of
// its own could come after a retry had stopped the master already, and
// stop it again just after fg continued it.
func (w *terminalWatch) stoppedByTerminal() bool {
	signal.Stop(w.sigs) // returns once no delivery to w.sigs is under way
	defer signal.Notify(w.sigs, syscall.SIGTTOU)
	select {
	case <-w.sigs:
	default:
	}
	continued := make(chan os.Signal, 1)
	signal.Notify(continued, syscall.SIGCONT)
	defer signal.Stop(continued)
	var goHandler, dfl sigaction
	if err := rtSigaction(syscall.SIGTTOU, &dfl, &goHandler); err != nil {
		return false // cannot tell: a command, as before
	}
	defer func() {
		if err := rtSigaction(syscall.SIGTTOU, &goHandler, nil); err != nil {
			// Cannot happen with what the kernel just gave us; should it,
			// the master would stop at the next SIGTTOU, never retire a worker.
			panic("supervisor: restore the SIGTTOU handler: " + err.Error())
		}
	}()
	retry := time.NewTimer(terminalRetry)
	defer retry.Stop()
	select {
	case <-continued:
		return true
	case <-retry.C:
		return false
	case <-w.quit:
		return true
	}
}

// sigaction is the kernel's struct sigaction for rt_sigaction, as bytes:
// all zero is SIG_DFL with no flags, and one the kernel filled in is put
// back as it was, whatever the architecture's layout (32 bytes on 64-bit
// ones; this is room enough for any).
type sigaction [64]byte

// kernelSigsetSize is the size of the kernel's sigset_t, which
// rt_sigaction checks: 64 signals, 128 on MIPS.
func kernelSigsetSize() uintptr {
	if strings.HasPrefix(runtime.GOARCH, "mips") {
		return 16
	}
	return 8
}

// rtSigaction sets sig's action to act, saving the old one in old if
// that is not nil.
func rtSigaction(sig syscall.Signal, act, old *sigaction) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), kernelSigsetSize(), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// backgroundOnTostop reports whether the master is in a background process
// group of its controlling terminal, and the terminal has TOSTOP set: then
// any write of ours to it brings SIGTTOU.
func backgroundOnTostop() bool {
	// Opening it, reading its foreground group and its modes: none of it is
	// what a background job may not do.
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // no controlling terminal (a service, a container)
	}
	defer unix.Close(fd)
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg == unix.Getpgrp() {
		return false
	}
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil && tio.Lflag&unix.TOSTOP != 0
}
