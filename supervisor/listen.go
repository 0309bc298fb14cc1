package supervisor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Listen binds and listens once, the way uvicorn's master does before it
// starts any worker, and returns the socket as an *os.File (ready to pass as
// exec.Cmd.ExtraFiles[0]) plus the address actually bound, so port 0 yields
// the ephemeral port. backlog is the one asked for, not net's somaxconn.
func Listen(host string, port, backlog int) (*os.File, *net.TCPAddr, error) {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	if backlog < 1 {
		return nil, nil, fmt.Errorf("listen %s: backlog must be at least 1, got %d", hostPort, backlog)
	}
	fd, addr, err := bindTCP(host, port, false)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}
	return os.NewFile(uintptr(fd), "tcp:"+addr.String()), addr, nil
}

// ReservePort is the master's part of --reuse-port, where every worker binds
// its own SO_REUSEPORT socket: it binds one too, without listening, and
// returns it with the address actually bound. That fails fast with the
// usual "address already in use" before any worker starts, turns port 0
// into a concrete port for the workers' argv, and keeps the port ours
// across worker restarts. A socket that is bound but not listening is not
// in the kernel's listening group, so it never receives a connection. Keep
// the file open while Run runs and close it afterwards; workers do not
// inherit it (it is close-on-exec and not in ExtraFiles).
//
// Because SO_REUSEPORT lets any process of the same user share the port, a
// bind alone cannot see another --reuse-port server already there; a
// connect can, so an explicit port that accepts a connection is refused too.
func ReservePort(host string, port int) (*os.File, *net.TCPAddr, error) {
	fd, addr, err := bindTCP(host, port, true)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "reserved:"+addr.String())
	if port != 0 {
		probe := &net.TCPAddr{IP: addr.IP, Port: addr.Port, Zone: addr.Zone}
		if probe.IP.IsUnspecified() {
			probe.IP = net.IPv4(127, 0, 0, 1)
			if addr.IP.To4() == nil {
				probe.IP = net.IPv6loopback
			}
		}
		if c, err := net.DialTimeout("tcp", probe.String(), time.Second); err == nil {
			c.Close()
			f.Close()
			return nil, nil, fmt.Errorf("bind %s: %w (another server listens there with SO_REUSEPORT)",
				net.JoinHostPort(host, strconv.Itoa(port)), unix.EADDRINUSE)
		}
	}
	return f, addr, nil
}

// bindTCP creates a close-on-exec TCP socket bound to host:port, with
// SO_REUSEADDR and, if reusePort, SO_REUSEPORT.
//
// It goes through unix rather than net so the caller picks the backlog
// (net uses somaxconn) and the socket stays in blocking mode: O_NONBLOCK
// lives on the file description every worker shares, so each worker sets the
// mode it needs and the master never touches it.
func bindTCP(host string, port int, reusePort bool) (int, *net.TCPAddr, error) {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	if port < 0 || port > 65535 {
		return -1, nil, fmt.Errorf("listen %s: port must be 0-65535", hostPort)
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
	return fd, tcpAddr(bound), nil
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
