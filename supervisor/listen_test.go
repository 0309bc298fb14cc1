package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListen(t *testing.T) {
	f, addr, err := Listen("127.0.0.1", 0, 37)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if addr.Port == 0 || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("bound %v, want 127.0.0.1 with an ephemeral port", addr)
	}
	fd := int(f.Fd())
	// The backlog is the one asked for, not net.Listen's somaxconn: for a
	// listening socket Linux reports it in tcpi_sacked.
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sacked != 37 {
		t.Errorf("backlog %d, want 37", info.Sacked)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR); err != nil || v == 0 {
		t.Errorf("SO_REUSEADDR = %d, %v; want set", v, err)
	}
	// Close-on-exec: only ExtraFiles may hand it to a child.
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("FD_CLOEXEC not set: flags %#x, %v", flags, err)
	}

	// It is a real listener: a dup served through net accepts a dial.
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Busy port: the error a user sees.
	_, _, err = Listen("127.0.0.1", addr.Port, 37)
	want := fmt.Sprintf("bind 127.0.0.1:%d: address already in use", addr.Port)
	if err == nil || err.Error() != want || !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("second Listen: %v, want %q", err, want)
	}
}

func TestListenIPv6AndErrors(t *testing.T) {
	if f, addr, err := Listen("::1", 0, 8); err != nil {
		t.Logf("no IPv6 loopback here: %v", err)
	} else {
		f.Close()
		if addr.IP.To4() != nil || addr.Port == 0 {
			t.Errorf("bound %v, want [::1]:ephemeral", addr)
		}
	}
	for _, tc := range []struct {
		host          string
		port, backlog int
		want          string
	}{
		{"127.0.0.1", 70000, 8, "port must be 0-65535"},
		{"127.0.0.1", 0, 0, "backlog must be at least 1"},
		{"no such host.invalid", 0, 8, "listen no such host.invalid:0"},
		{"192.0.2.1", 0, 8, "bind 192.0.2.1:0: cannot assign requested address"},
	} {
		if f, _, err := Listen(tc.host, tc.port, tc.backlog); err == nil {
			f.Close()
			t.Errorf("Listen(%q, %d, %d) succeeded", tc.host, tc.port, tc.backlog)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%q, %d, %d): %v, want %q", tc.host, tc.port, tc.backlog, err, tc.want)
		}
	}
}

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
