// Package sockets opens and checks every listening socket demo accepts on,
// with raw syscalls where net would choose for us: a TCP socket (its
// backlog, blocking mode left alone) and a --reuse-port one (tcp.go), a
// unix socket (unix.go), and a socket a parent passed, by number or by
// systemd's socket activation (activation.go), each checked to really be a
// listening socket. The master, its workers and the external API use it;
// none of them imports another.
package sockets

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"demo/setting"
)

// ValidHost reports whether host can be listened on as given: an IP
// address, or a name of letters, digits, hyphens, dots and underscores for
// the resolver to look up.
func ValidHost(host string) bool {
	if net.ParseIP(host) != nil {
		return true
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// BindTCP creates a close-on-exec TCP socket bound to host:port, with
// SO_REUSEADDR and, if reusePort, SO_REUSEPORT.
//
// It goes through unix rather than net so the caller picks the backlog
// (net uses somaxconn) and the socket stays in blocking mode: O_NONBLOCK
// lives on the file description every worker shares, so each worker sets the
// mode it needs and the master never touches it.
func BindTCP(host string, port int, reusePort bool) (int, *net.TCPAddr, error) {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	if port < 0 || port > 65535 {
		return -1, nil, setting.Errorf("Port", "must be 0-65535, got %d", port)
	}
	if host != "" && !ValidHost(host) {
		return -1, nil, setting.Errorf("Host", "%q: want an IP address or a host name", host)
	}
	want, err := net.ResolveTCPAddr("tcp", hostPort)
	if err != nil {
		return -1, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}
	family, sa, err := sockaddr(want)
	if err != nil {
		return -1, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, nil, fmt.Errorf("socket for %s: %w", hostPort, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	// Without SO_REUSEADDR a restart right after a stop fails with "address
	// already in use" while old connections sit in TIME_WAIT.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return -1, nil, fmt.Errorf("setsockopt SO_REUSEADDR on %s: %w", hostPort, err)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return -1, nil, fmt.Errorf("setsockopt SO_REUSEPORT on %s: %w", hostPort, err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, nil, fmt.Errorf("bind %s: %w", hostPort, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return -1, nil, fmt.Errorf("getsockname for %s: %w", hostPort, err)
	}
	ok = true
	return fd, TCPAddr(bound), nil
}

// sockaddr converts a resolved address to the family and sockaddr for bind.
// A missing host binds every IPv4 address, as uvicorn does for --host "".
func sockaddr(a *net.TCPAddr) (int, unix.Sockaddr, error) {
	if a.IP == nil {
		return unix.AF_INET, &unix.SockaddrInet4{Port: a.Port}, nil
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return 0, nil, errors.New("unusable IP address")
	}
	if ip.Is4In6() || ip.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: a.Port, Addr: ip.Unmap().As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: a.Port, Addr: ip.As16()}
	if a.Zone != "" {
		ifi, err := net.InterfaceByName(a.Zone)
		if err != nil {
			return 0, nil, fmt.Errorf("zone %q: %w", a.Zone, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return unix.AF_INET6, sa, nil
}

// TCPAddr converts what getsockname returns for a TCP socket.
func TCPAddr(sa unix.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *unix.SockaddrInet6:
		a := &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	}
	return &net.TCPAddr{}
}

// Addr is the local address of the socket file f: a *net.TCPAddr, or a
// *net.UnixAddr for a unix socket. f keeps its descriptor.
func Addr(f *os.File) (net.Addr, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("address of %s: %w", f.Name(), err)
	}
	var sa unix.Sockaddr
	if cerr := rc.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("address of %s: %w", f.Name(), err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		return TCPAddr(sa), nil
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}, nil
	}
	return nil, fmt.Errorf("address of %s: not a TCP or unix socket", f.Name())
}

// CheckListening makes sure fd is a listening stream socket of a family the
// server handles (TCP, or a unix socket for --uds): what --fd, systemd and a
// worker's fd 3 must be, so a wrong descriptor fails loudly instead of
// serving nothing.
func CheckListening(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("fd %d is not a listening socket: %w", fd, err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil || typ != unix.SOCK_STREAM || acc != 1 {
		return fmt.Errorf("fd %d is not a listening socket (want a listening stream socket)", fd)
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("fd %d: socket family: %w", fd, err)
	}
	switch domain {
	case unix.AF_INET, unix.AF_INET6, unix.AF_UNIX:
		return nil
	}
	return fmt.Errorf("fd %d is a listening socket of family %d, want TCP or unix", fd, domain)
}
