package worker

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"demo/contract"
)

// pipeBuf is POSIX's PIPE_BUF on Linux: a write of at most this many bytes
// to a pipe is atomic, never interleaved with another writer's bytes.
const pipeBuf = 4096

// errPipeFull means the master is not reading its status pipe: the message
// was dropped rather than wait.
var errPipeFull = errors.New("status pipe full")

// statusPipe is the worker's write end of the status pipe (contract.StatusFD).
//
// Two goroutines write to it: the loop (Ready, Beat, Retire) and the lifeline
// watcher beside it (Alive). Each message is a single write(2) shorter than
// PIPE_BUF, which a pipe performs atomically, so lines never interleave and
// no lock is needed — a lock would let a blocked writer stall the other.
//
// The descriptor is non-blocking: the loop must never wait on the master. A
// full pipe (master stuck) fails with EAGAIN and the message is dropped; a
// master that is gone fails with EPIPE (Go ignores SIGPIPE for fds other
// than 1 and 2). Raw writes, not an *os.File, so the runtime poller never
// parks a writer waiting for room.
type statusPipe struct{ fd int }

func openStatusPipe(fd int) (*statusPipe, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("status pipe fd %d: %w", fd, err)
	}
	return &statusPipe{fd: fd}, nil
}

// send writes m in one write(2). It returns errPipeFull when there is no
// room, without blocking. Safe from any goroutine.
func (p *statusPipe) send(m contract.Msg) error {
	b := m.Encode()
	if len(b) > pipeBuf {
		return fmt.Errorf("status message of %d bytes would not be written atomically", len(b))
	}
	for {
		_, err := unix.Write(p.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return errPipeFull
		case err != nil:
			return fmt.Errorf("write %s to status pipe: %w", m.Kind, err)
		}
		// A pipe write of at most PIPE_BUF bytes is all or nothing.
		return nil
	}
}

// close releases the descriptor; call it once no goroutine sends any more.
func (p *statusPipe) close() error { return unix.Close(p.fd) }
