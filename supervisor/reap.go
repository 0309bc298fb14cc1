package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// reaper notices, on the owner goroutine, which workers exited: at every
// SIGCHLD it asks the kernel about each worker not yet reaped with
// wait4(pid, WNOHANG), as gunicorn's arbiter does. Waiting for each worker
// with os/exec's Wait instead parks an OS thread per worker in waitid:
// 500 threads for --workers 499.
//
// It waits only for the pids it started, never wait4(-1): that would take
// the exits of any other child of the process (a program that runs Run
// beside children of its own), and no other code could then wait for them.
// A pid stays ours until we reap it, so wait4 on it cannot reach another
// process; and only the reaper reaps a worker (nothing calls Wait on it).
type reaper struct {
	// sigchld has room for one signal: one pending SIGCHLD is enough,
	// since the scan it triggers finds every exit that came before it.
	sigchld chan os.Signal
	procs   []*execProcess // started and not yet reaped, in start order
}

// newReaper subscribes to SIGCHLD; it must, before the first worker starts.
func newReaper() *reaper {
	r := &reaper{sigchld: make(chan os.Signal, 1)}
	signal.Notify(r.sigchld, syscall.SIGCHLD)
	return r
}

func (r *reaper) stop() { signal.Stop(r.sigchld) }

// add watches p, just started.
func (r *reaper) add(p *execProcess) { r.procs = append(r.procs, p) }

// reap reaps every watched process that has exited, records how it ended
// (execProcess.status), and returns them in start order.
func (r *reaper) reap() []*execProcess {
	var exited []*execProcess
	running := r.procs[:0]
	for _, p := range r.procs {
		if p.reap() {
			exited = append(exited, p)
		} else {
			running = append(running, p)
		}
	}
	clear(r.procs[len(running):])
	r.procs = running
	return exited
}

// reap reaps p if it has exited, without waiting.
func (p *execProcess) reap() bool {
	var ws syscall.WaitStatus
	for {
		pid, err := syscall.Wait4(p.id, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			// ECHILD: something else in this process reaped it (or
			// SIGCHLD was set to SIG_IGN, which makes the kernel reap).
			// Its status is lost, but not the event: its slot must not
			// wait forever for an exit nobody will report.
			p.ex = exitInfo{code: -1, desc: "exit status unknown (" + err.Error() + ")"}
			return true
		case pid == 0:
			return false // still running
		}
		p.ex = exitOf(ws)
		return true
	}
}

// exitOf describes ws in os.ProcessState.String's words ("exit status 3",
// "signal: killed", "signal: segmentation fault (core dumped)"), which the
// master's log lines and the tools that read them use.
func exitOf(ws syscall.WaitStatus) exitInfo {
	var desc string
	switch {
	case ws.Exited():
		desc = "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		desc = "signal: " + ws.Signal().String()
	default: // wait4 without WUNTRACED reports only exits
		desc = fmt.Sprintf("wait status %#x", uint32(ws))
	}
	if ws.CoreDump() {
		desc += " (core dumped)"
	}
	return exitInfo{code: ws.ExitStatus(), desc: desc}
}
