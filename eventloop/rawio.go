package eventloop

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's sockets are non-blocking: a read or write on one returns at
// once, so the loop makes it as a raw system call, without telling the
// scheduler it may block (entersyscall, exitsyscall). That spares the
// bookkeeping on every request, and the hand-off of the loop's P to another
// thread — and the loop's wait to get it back — whenever the system monitor
// finds the thread in a call that happens to outlast its tick. Only
// epoll_wait, which does wait, goes through the scheduler.

// rawRead is unix.Read for a non-blocking descriptor.
func rawRead(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

// rawWrite is unix.Write for a non-blocking descriptor.
func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO makes read(2) or write(2) (trap) on fd with p.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}
