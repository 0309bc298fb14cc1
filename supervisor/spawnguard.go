package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// A spawn must not hang on a child stopped before its exec. os.StartProcess
// forks with CLONE_VFORK: the spawner's thread waits in the kernel until the
// child execs or dies, and the owner goroutine waits for the spawner. Go's
// child blocks every signal from the fork, joins its own process group
// (Setpgid), and only then restores the default actions and the spawner
// thread's signal mask. A stop signal sent to the master's process group in
// between reaches the child while it is still in that group and stops it
// once it is in its own; the SIGCONT of fg goes to the master's group and
// never reaches it. The master then waits forever: no worker starts, no
// signal is handled.
//
// Two defences. The stops a terminal or a job-control command sends are
// blocked for good (blockJobStops): that closes the window. SIGSTOP cannot
// be blocked, and `kill -STOP -PGID` still catches a child inside its
// setpgid now and then; continueStoppedSpawn finds such a child and
// continues it.

// jobStops are the signals whose default action stops a process and that
// a process can block: a terminal's Ctrl+Z (SIGTSTP), a `stty tostop`
// terminal's answer to a background write (SIGTTOU) or read (SIGTTIN), or
// `kill -TSTP -PGID`, all sent to the master's whole process group.
var jobStops = []syscall.Signal{syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU}

// blockJobStops blocks jobStops on the calling thread, the spawner's, and so
// in each child from its fork through its exec: one sent to the master's
// group while the child is still in it stays pending in the worker, never
// acted on. A worker is no job of the terminal (it ignores SIGTTOU for its
// writes, too); the master itself still stops, on its other threads.
func blockJobStops() {
	var set unix.Sigset_t
	bits := uint(unsafe.Sizeof(set.Val[0]) * 8)
	for _, sig := range jobStops {
		n := uint(sig) - 1
		set.Val[n/bits] |= 1 << (n % bits)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		// Cannot happen with a valid set.
		panic("supervisor: block job-control stops on the spawner thread: " + err.Error())
	}
}

// spawnCheck: a spawn takes milliseconds; one that has not returned after
// this is looked into, and again as long as it has not. A master that was
// stopped meanwhile looks once it runs again, so a child stopped with it is
// continued with it.
const spawnCheck = time.Second

// continueStoppedSpawn runs on the owner goroutine while the spawn of
// worker name has not returned after waited. A process the spawner forked
// that is stopped and is no worker yet is that spawn's child, stopped before
// its exec: SIGCONT lets it exec and become the worker (a pending stop, too,
// is discarded by SIGCONT). SIGKILL would do as well, but would be reported
// as a worker that died, and count towards the crash back-off.
func (s *supervisor) continueStoppedSpawn(name string, waited time.Duration) {
	forked, err := s.spawner.children()
	if err != nil {
		s.log.Warn(fmt.Sprintf("Starting worker %s is taking %s; cannot look for a stopped child: %v", name, seconds(waited), err))
		return
	}
	known := make(map[int]bool, len(s.children))
	for _, c := range s.children {
		known[c.pid] = true
	}
	for _, pid := range forked {
		if known[pid] || procState(pid) != 'T' {
			continue // a worker (a stopped one is the healthcheck's), or not stopped
		}
		// Still our unreaped child: the pid cannot have been reused.
		err := unix.Kill(pid, unix.SIGCONT)
		if errors.Is(err, unix.ESRCH) {
			continue
		}
		msg := fmt.Sprintf("Child process [%d] for worker %s was stopped before it could run the worker (likely by a SIGSTOP to the master's process group), %s into its start: sent it SIGCONT", pid, name, seconds(waited))
		if err != nil {
			s.log.Warn(msg, zap.Error(err))
			continue
		}
		s.log.Warn(msg)
	}
}

// children lists the processes the spawner's thread forked that still
// exist: /proc lists a process's children per thread that forked them
// (where the kernel has CONFIG_PROC_CHILDREN, as the common ones do).
func (sp *spawner) children() ([]int, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/children", sp.tid))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(raw)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("children of the spawner thread: %w", err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// procState is pid's state letter as /proc shows it: 'T' stopped by a
// signal ('t' is a debugger's stop, left alone), 0 if pid is gone.
func procState(pid int) byte {
	fields := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	if len(fields) == 0 || fields[0] == "" {
		return 0
	}
	return fields[0][0]
}

// statFields are the fields of a /proc stat file after the command name,
// which may itself hold spaces and parentheses; nil if it cannot be read.
func statFields(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
