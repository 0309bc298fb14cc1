package sockets

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestListenTCP(t *testing.T) {
	f, addr, err := ListenTCP("127.0.0.1", 0, 37)
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
	_, _, err = ListenTCP("127.0.0.1", addr.Port, 37)
	want := fmt.Sprintf("bind 127.0.0.1:%d: address already in use", addr.Port)
	if err == nil || err.Error() != want || !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("second ListenTCP: %v, want %q", err, want)
	}
}

func TestListenIPv6AndErrors(t *testing.T) {
	if f, addr, err := ListenTCP("::1", 0, 8); err != nil {
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
		{"127.0.0.1", 70000, 8, "Port must be 0-65535, got 70000"},
		{"127.0.0.1", 0, 0, "Backlog must be at least 1, got 0"},
		{"no such host.invalid", 0, 8, `Host "no such host.invalid": want an IP address or a host name`},
		{"nosuchhost.invalid", 0, 8, "listen nosuchhost.invalid:0"},
		{"192.0.2.1", 0, 8, "bind 192.0.2.1:0: cannot assign requested address"},
	} {
		if f, _, err := ListenTCP(tc.host, tc.port, tc.backlog); err == nil {
			f.Close()
			t.Errorf("ListenTCP(%q, %d, %d) succeeded", tc.host, tc.port, tc.backlog)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ListenTCP(%q, %d, %d): %v, want %q", tc.host, tc.port, tc.backlog, err, tc.want)
		}
	}
}

// reusePortListen binds a SO_REUSEPORT listener through net, as another
// server sharing the port would.
func reusePortListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

func TestReservePort(t *testing.T) {
	res, addr, err := ReservePort("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if addr.Port == 0 {
		t.Fatalf("reserved %v, want a concrete port", addr)
	}
	fd := int(res.Fd())
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || v == 0 {
		t.Errorf("SO_REUSEPORT = %d, %v", v, err)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 0 {
		t.Errorf("the reservation listens (SO_ACCEPTCONN %d, %v): it would take connections", v, err)
	}
	// With nobody listening yet, a connection is refused: the reservation
	// takes none.
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Errorf("connected to a port only reserved")
	}
	// Workers bind it too (or any server with SO_REUSEPORT), and share the
	// connections.
	var lns []net.Listener
	for range 2 {
		ln, err := reusePortListen(addr.String())
		if err != nil {
			t.Fatalf("worker-style bind on the reserved port: %v", err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A plain listener cannot take the port.
	if f, _, err := ListenTCP("127.0.0.1", addr.Port, 8); err == nil {
		f.Close()
		t.Errorf("a plain ListenTCP took a reserved port")
	}
	// Nor can a second --reuse-port server, though the kernel would let it.
	if f, _, err := ReservePort("127.0.0.1", addr.Port); err == nil {
		f.Close()
		t.Errorf("a second ReservePort shares a port that has listeners")
	} else if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "another server listens there with SO_REUSEPORT") {
		t.Errorf("second ReservePort: %v", err)
	}
	// A port held by a plain listener: the bind itself fails.
	plain, paddr, err := ListenTCP("127.0.0.1", 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	want := fmt.Sprintf("bind 127.0.0.1:%d: address already in use", paddr.Port)
	if f, _, err := ReservePort("127.0.0.1", paddr.Port); err == nil {
		f.Close()
		t.Errorf("ReservePort took a port a plain listener holds")
	} else if err.Error() != want {
		t.Errorf("ReservePort on a busy port: %v, want %q", err, want)
	}
}

func TestListenReusePort(t *testing.T) {
	fd, addr, err := ListenReusePort("127.0.0.1", 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if addr.Port == 0 {
		t.Fatalf("bound %v, want a concrete port", addr)
	}
	for opt, want := range map[int]int{unix.SO_REUSEPORT: 1, unix.SO_ACCEPTCONN: 1} {
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err != nil || v != want {
			t.Errorf("socket option %d = %d, %v; want %d", opt, v, err, want)
		}
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("FD_CLOEXEC not set: %#x, %v", flags, err)
	}
	// A second one shares the port, each with its own queue: a connection
	// waits in exactly one of them.
	fd2, addr2, err := ListenReusePort("127.0.0.1", addr.Port, 8)
	if err != nil {
		t.Fatalf("second socket on the port: %v", err)
	}
	defer unix.Close(fd2)
	if addr2.Port != addr.Port {
		t.Fatalf("second socket bound %v, want port %d", addr2, addr.Port)
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	queued := 0
	for _, lfd := range []int{fd, fd2} {
		if err := unix.SetNonblock(lfd, true); err != nil {
			t.Fatal(err)
		}
		if nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC); err == nil {
			unix.Close(nfd)
			queued++
		}
	}
	if queued != 1 {
		t.Errorf("the connection was queued on %d sockets, want 1", queued)
	}
	if f, _, err := ListenTCP("127.0.0.1", addr.Port, 8); err == nil {
		f.Close()
		t.Errorf("a plain ListenTCP took a port SO_REUSEPORT sockets listen on")
	}
	if _, _, err := ListenReusePort("127.0.0.1", 0, 0); err == nil || !strings.Contains(err.Error(), "backlog must be at least 1") {
		t.Errorf("backlog 0: %v, want 'backlog must be at least 1'", err)
	}
}
