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
//
// They are recv(2) and send(2) rather than read(2) and write(2): the same
// bytes, but straight into the socket layer, past the file layer's checks
// and its position lock, and a send to a peer that has gone fails with
// EPIPE without raising SIGPIPE first. The error is the bare errno (0 for
// none), compared with ==: no interface to build or unwrap per request.

// rawRead reads from the non-blocking socket fd into p.
func rawRead(fd int, p []byte) (int, unix.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(n), errno
}

// rawWrite writes p to the non-blocking socket fd.
func rawWrite(fd int, p []byte) (int, unix.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	return int(n), errno
}
