package worker

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// listenReusePort binds this worker's own listening socket on addr
// (host:port, a concrete port) with SO_REUSEPORT, for `serve --reuse-port`:
// every worker binds the same address and the kernel spreads new
// connections across their sockets by a hash of the client's address. Unlike
// a shared socket, a connection hashed to a worker whose loop is blocked
// waits in that worker's queue even while others are idle.
//
// It returns a raw fd (non-blocking, close-on-exec) that the caller owns.
func listenReusePort(addr string, backlog int) (int, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return -1, fmt.Errorf("--reuse-port-bind %s: %w", addr, err)
	}
	if tcp.Port == 0 {
		return -1, fmt.Errorf("--reuse-port-bind %s: needs a concrete port, every worker must bind the same one", addr)
	}
	family, sa, err := sockaddrOf(tcp)
	if err != nil {
		return -1, fmt.Errorf("--reuse-port-bind %s: %w", addr, err)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket for %s: %w", addr, err)
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt on %s: %w", addr, err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s with SO_REUSEPORT: %w", addr, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %s: %w", addr, err)
	}
	return fd, nil
}

// sockaddrOf converts a resolved address to what bind takes. No host means
// every IPv4 address, as for the master's socket.
func sockaddrOf(a *net.TCPAddr) (int, unix.Sockaddr, error) {
	if a.IP == nil {
		return unix.AF_INET, &unix.SockaddrInet4{Port: a.Port}, nil
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return 0, nil, errors.New("unusable IP address")
	}
	if ip = ip.Unmap(); ip.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: a.Port, Addr: ip.As4()}, nil
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

// checkListener makes sure fd is a listening stream socket of a family the
// server handles (TCP, or a unix socket for --uds), so a worker started with
// the wrong fd 3 fails loudly instead of serving nothing.
func checkListener(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("fd %d is not a socket: %w", fd, err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil || typ != unix.SOCK_STREAM || acc != 1 {
		return fmt.Errorf("fd %d is not a listening stream socket", fd)
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
