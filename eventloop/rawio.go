package eventloop

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's sockets are non-blocking: a system call on one returns at
// once, so the loop makes it raw, without telling the scheduler it may
// block (entersyscall, exitsyscall). That spares the bookkeeping on every
// call, and the hand-off of the loop's P to another thread — and the
// loop's wait to get it back — whenever the system monitor finds the
// thread in a call that happens to outlast its tick, as connect(2) and
// close(2) on loopback do: they run the peer's side of the handshake or
// the teardown before they return. Only epoll_wait, which does wait, goes
// through the scheduler.
//
// Reads and writes are recv(2) and send(2) rather than read(2) and
// write(2): the same bytes, but straight into the socket layer, past the
// file layer's checks and its position lock, and a send to a peer that
// has gone fails with EPIPE without raising SIGPIPE first. The error is
// the bare errno (0 for none), compared with ==: no interface to build or
// unwrap per request.

// Recv reads from the non-blocking socket fd into p.
func Recv(fd int, p []byte) (int, unix.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(n), errno
}

// Send writes p to the non-blocking socket fd.
func Send(fd int, p []byte) (int, unix.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	return int(n), errno
}

// rawClose closes fd. A socket's close never waits (no SO_LINGER here).
func rawClose(fd int) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// epollCtl is unix.EpollCtl as a raw system call.
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	if _, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}
