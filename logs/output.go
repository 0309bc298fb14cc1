package logs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// output is the descriptor a Sink's writer goroutine writes to: its own,
// opened on the file the process was given (stderr), so that a write never
// waits for the reader and the goroutine can always be stopped.
//
// The inherited descriptor is shared: with the master, the other workers,
// and often the shell or whatever runs `demo ... 2>&1 | tool`. Setting
// O_NONBLOCK on it would change it for all of them (a shell that gets
// EAGAIN from its own terminal after we exit), so it is left alone:
//
//   - a pipe, a FIFO or a terminal is opened again through /proc/self/fd,
//     which gives a new file description of the same pipe or terminal, made
//     non-blocking for us alone;
//   - a stream socket (systemd's journal) is written with MSG_DONTWAIT,
//     non-blocking per call;
//   - a regular file never makes a writer wait for a reader: a dup of the
//     descriptor is written as is. So is anything that cannot be reopened
//     (no /proc): then a stuck write can hold the writer goroutine, though
//     never the goroutines that log.
type output struct {
	fd       int
	pipe     bool // a pipe or FIFO: writes of up to PIPE_BUF are atomic
	socket   bool // write with send(MSG_DONTWAIT) instead of write(2)
	nonblock bool // fd is our own O_NONBLOCK description: a write never waits
	stopFD   int  // eventfd: interrupt wakes a writer waiting in wait
}

// errReaderGone is what a write reports once nobody can read the lines:
// the pipe's reader exited (EPIPE), the terminal hung up (EIO).
var errReaderGone = errors.New("log reader gone")

// openOutput opens an output on the file open as fd. A pipe or FIFO that
// no process reads any more gives errReaderGone.
func openOutput(fd int) (*output, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("log output fd %d: %w", fd, err)
	}
	o := &output{fd: -1, stopFD: -1}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
		// A dup, written as is.
	case unix.S_IFSOCK:
		typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		// A datagram socket would need one send per line; rare enough
		// for stderr to be written plainly.
		o.socket = err == nil && typ == unix.SOCK_STREAM
	default: // FIFO, terminal, /dev/null
		o.pipe = st.Mode&unix.S_IFMT == unix.S_IFIFO
		if o.pipe {
			growPipe(fd)
		}
		nfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		switch {
		case err == nil:
			o.fd, o.nonblock = nfd, true
		case errors.Is(err, unix.ENXIO) && o.pipe:
			return nil, errReaderGone // a FIFO without a reader cannot be opened non-blocking
		}
		// Otherwise (no /proc, no permission): a dup, written as is.
	}
	if o.fd < 0 {
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("log output fd %d: %w", fd, err)
		}
		o.fd = nfd
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(o.fd)
		return nil, fmt.Errorf("log output: eventfd: %w", err)
	}
	o.stopFD = stop
	return o, nil
}

// pipeSize is the capacity a Sink asks of a pipe it writes to: a busy
// worker's batch of access lines (tens to hundreds of KiB every Batch) then
// goes in at once and the reader drains it at its pace. In the 64 KiB a
// pipe starts with, the batch went in a few KiB per wake-up of the writer,
// each a poll(2) and a return through the scheduler. 1 MiB is what Linux
// lets any process ask (fs.pipe-max-size).
const pipeSize = 1 << 20

// growPipe makes the pipe open as fd hold pipeSize bytes if it has the
// kernel's default size (16 pages): a size someone chose is left alone.
// Refused (over the user's quota of pipe memory), it stays as it is.
func growPipe(fd int) {
	if n, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err == nil && n == 16*os.Getpagesize() {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeSize)
	}
}

// write writes what it can of p, without waiting unless o.fd is one of the
// files written as is.
// Errors that mean nobody will ever read p become errReaderGone.
func (o *output) write(p []byte) (int, error) {
	var n int
	var err error
	switch {
	case o.socket:
		n, err = unix.SendmsgN(o.fd, p, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	case o.nonblock && len(p) > 0:
		// A write that cannot wait need not tell the scheduler it may
		// (entersyscall, exitsyscall): that also spares the P a hand-off
		// to another thread, and the thread a wake-up, when the system
		// monitor finds it in the call. A busy worker's access log is
		// written here thousands of times a second.
		r, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(o.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if n = int(r); errno != 0 {
			n, err = -1, errno
		}
	default:
		n, err = unix.Write(o.fd, p)
	}
	if n < 0 {
		n = 0
	}
	switch {
	case err == nil, errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return n, err
	case errors.Is(err, unix.EPIPE), errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.EIO),
		errors.Is(err, unix.EBADF), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOTCONN):
		return n, fmt.Errorf("%w: %w", errReaderGone, err)
	}
	return n, err // e.g. ENOSPC: this batch is lost, the next may pass
}

// wait returns once o can take more bytes, or false once interrupt was
// called.
func (o *output) wait() bool {
	fds := []unix.PollFd{{Fd: int32(o.fd), Events: unix.POLLOUT}, {Fd: int32(o.stopFD), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false // cannot wait: give up rather than spin
		}
		if fds[1].Revents != 0 {
			return false
		}
		// POLLERR or POLLHUP too: the next write says what happened.
		if fds[0].Revents != 0 {
			return true
		}
	}
}

// interrupt makes wait return false, now and from now on.
func (o *output) interrupt() {
	one := [8]byte{1}
	_, _ = unix.Write(o.stopFD, one[:])
}

// close releases both descriptors; the writer goroutine must be done.
func (o *output) close() error {
	return errors.Join(unix.Close(o.fd), unix.Close(o.stopFD))
}
