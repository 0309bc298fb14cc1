package supervisor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Listen binds and listens once, the way uvicorn's master does before it
// starts any worker, and returns the socket as an *os.File (ready to pass as
// exec.Cmd.ExtraFiles[0]) plus the address actually bound, so port 0 yields
// the ephemeral port.
//
// It goes through unix.Listen rather than net.Listen so backlog is the one
// asked for instead of net's somaxconn default. The socket is left in
// blocking mode and os.NewFile will not flip it later: O_NONBLOCK lives on the
// file description every worker shares, so each worker sets the mode it
// needs and the master never touches it.
func Listen(host string, port, backlog int) (*os.File, *net.TCPAddr, error) {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	if port < 0 || port > 65535 {
		return nil, nil, fmt.Errorf("listen %s: port must be 0-65535", hostPort)
	}
	if backlog < 1 {
		return nil, nil, fmt.Errorf("listen %s: backlog must be at least 1, got %d", hostPort, backlog)
	}
	want, err := net.ResolveTCPAddr("tcp", hostPort)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}
	family, sa, err := sockaddr(want)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}

	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, nil, fmt.Errorf("socket for %s: %w", hostPort, err)
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
		return nil, nil, fmt.Errorf("setsockopt SO_REUSEADDR on %s: %w", hostPort, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, nil, fmt.Errorf("bind %s: %w", hostPort, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("getsockname for %s: %w", hostPort, err)
	}
	addr := tcpAddr(bound)
	ok = true
	return os.NewFile(uintptr(fd), "tcp:"+addr.String()), addr, nil
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

func tcpAddr(sa unix.Sockaddr) *net.TCPAddr {
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
