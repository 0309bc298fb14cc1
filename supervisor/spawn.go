package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
)

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

// spawn starts a worker for sl per contract.go and the two goroutines that
// turn its exit and its status lines into events. It neither records the
// worker in sl nor logs: the caller decides what the new process is for.
func (s *supervisor) spawn(sl *slot) (*child, error) {
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

	c := &child{
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
	s.children = append(s.children, c)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		s.events <- event{kind: evExited, c: c, err: err}
	}()
	go func() {
		defer s.wg.Done()
		err := s.readStatusPipe(c)
		s.events <- event{kind: evPipeClosed, c: c, err: err}
	}()
	return c, nil
}

// readStatusPipe forwards each status line as an event until EOF, which comes
// when the worker exits (the master closed its copy of the write end).
func (s *supervisor) readStatusPipe(c *child) error {
	defer c.statusR.Close()
	r := contract.NewReader(c.statusR)
	for {
		msg, err := r.Next()
		if err == io.EOF {
			return nil
		}
		var numErr *strconv.NumError
		if errors.As(err, &numErr) {
			s.log.Warn("bad status line from worker", zap.String("worker", c.name()), zap.Int("pid", c.pid), zap.Error(err))
			continue
		}
		if err != nil {
			// Keep reading to EOF anyway: a worker writing into a pipe
			// nobody drains would block once the pipe buffer is full.
			_, _ = io.Copy(io.Discard, c.statusR)
			return err
		}
		s.events <- event{kind: evMsg, c: c, msg: msg}
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
