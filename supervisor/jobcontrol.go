package supervisor

import (
	"os"
	"os/signal"
	"runtime"
	"syscall"
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
// that did not catch SIGTTOU would, and as vi or less do, which catch stop
// signals only to stop on their own terms. Its workers go on serving
// meanwhile, in their own process groups, and pause.go keeps the time it
// was stopped from counting against them.
//
// The two senders cannot be told apart by the signal (os/signal does not
// give its si_code): a SIGTTOU that comes while the master is a background
// job of a tostop terminal is taken for the terminal's.

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
		if backgroundOnTostop() {
			w.stopJob()
			continue
		}
		select {
		case w.commands <- struct{}{}:
		case <-w.quit:
			return
		}
	}
}

// stopJob stops the master as the terminal's SIGTTOU does a job that does
// not catch it, and returns once it is continued.
//
// os/signal cannot give SIGTTOU its default action back once it was
// Notify'd (Reset leaves the runtime's handler in place, which then drops
// it), so the handler is swapped for SIG_DFL with rt_sigaction and put back
// after. Meanwhile nothing is delivered to w.sigs, so whatever comes there
// afterwards was sent afterwards: a SIGTTOU from the storm before the stop
// is never taken for a command once the master is in the foreground.
func (w *terminalWatch) stopJob() {
	signal.Stop(w.sigs) // returns once no delivery to w.sigs is under way
	defer signal.Notify(w.sigs, syscall.SIGTTOU)
	select {
	case <-w.sigs:
	default:
	}
	var goHandler, dfl sigaction
	if err := rtSigaction(syscall.SIGTTOU, &dfl, &goHandler); err != nil {
		// Stopped all the same, by a signal the shell reports less well.
		if backgroundOnTostop() {
			signalThisThread(syscall.SIGSTOP)
		}
		return
	}
	// From here on, a write of ours that the terminal refuses stops the
	// process by itself. Ask again: if that already happened and fg
	// continued us, we are in the foreground and must not stop again.
	if backgroundOnTostop() {
		signalThisThread(syscall.SIGTTOU)
	}
	if err := rtSigaction(syscall.SIGTTOU, &goHandler, nil); err != nil {
		// Cannot happen with what the kernel just gave us; should it, the
		// master would stop at the next SIGTTOU instead of retiring a worker.
		panic("supervisor: restore the SIGTTOU handler: " + err.Error())
	}
}

// signalThisThread sends sig to the calling thread, which acts on it before
// the system call returns: for a stop signal, the process stops there and
// goes on when continued.
func signalThisThread(sig syscall.Signal) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
}

// sigaction is the kernel's struct sigaction for rt_sigaction, as bytes:
// all zero is SIG_DFL with no flags, and one the kernel filled in is put
// back as it was, whatever the architecture's layout (32 bytes on 64-bit
// ones; this is room enough for any).
type sigaction [64]byte

// kernelSigsetSize is the kernel's sigset_t, which rt_sigaction checks:
// 64 signals (MIPS has 128; there the call fails and stopJob stops with
// SIGSTOP instead).
const kernelSigsetSize = 8

// rtSigaction sets sig's action to act, saving the old one in old if
// that is not nil.
func rtSigaction(sig syscall.Signal, act, old *sigaction) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), kernelSigsetSize, 0, 0)
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
