package supervisor

import (
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A listener from net's File() flips the shared socket to blocking on every
// Fd() call, i.e. at every spawn; the adopted copy must not.
func TestAdoptListenerKeepsWorkersNonblocking(t *testing.T) {
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	f, err := nl.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ln, err := adoptListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var raw int
	if err := rc.Control(func(fd uintptr) { raw = int(fd) }); err != nil {
		t.Fatal(err)
	}
	// A worker makes the shared description non-blocking; then the master
	// spawns another (exec.Cmd calls Fd on every ExtraFile).
	if err := unix.SetNonblock(raw, true); err != nil {
		t.Fatal(err)
	}
	ln.Fd()
	if fl, err := unix.FcntlInt(uintptr(raw), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("spawning flipped the shared socket to blocking (flags %#o, %v)", fl, err)
	}
	// The contrast: the File from net does flip it.
	f.Fd()
	if fl, _ := unix.FcntlInt(uintptr(raw), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
		t.Logf("note: net's File().Fd() no longer flips O_NONBLOCK on this Go")
	}

	// Not a listening socket: a clear error, before any worker fails on it.
	p, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	defer w.Close()
	if _, err := adoptListener(p); err == nil || !strings.Contains(err.Error(), "not a listening socket") {
		t.Errorf("adoptListener(pipe): %v, want 'not a listening socket'", err)
	}
}
