package sockets

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"demo/setting"
)

// ListenTCP binds and listens once, the way uvicorn's master does before it
// starts any worker, and returns the socket as an *os.File (ready to pass as
// exec.Cmd.ExtraFiles[0]) plus the address actually bound, so port 0 yields
// the ephemeral port. backlog is the one asked for, not net's somaxconn.
func ListenTCP(host string, port, backlog int) (*os.File, *net.TCPAddr, error) {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	if backlog < 1 {
		return nil, nil, setting.Errorf("Backlog", "must be at least 1, got %d", backlog)
	}
	fd, addr, err := BindTCP(host, port, false)
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
// the file open while the workers run and close it afterwards; they do not
// inherit it (it is close-on-exec).
//
// Because SO_REUSEPORT lets any process of the same user share the port, a
// bind alone cannot see another --reuse-port server already there; a
// connect can, so an explicit port that accepts a connection is refused too.
func ReservePort(host string, port int) (*os.File, *net.TCPAddr, error) {
	fd, addr, err := BindTCP(host, port, true)
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

// ListenReusePort binds and listens on a socket of its own with
// SO_REUSEPORT on host:port: each of the sockets bound to one address this
// way has its own accept queue, and the kernel spreads new connections
// across them by a hash of the client's address. It returns a raw fd
// (close-on-exec) that the caller owns and the address bound.
func ListenReusePort(host string, port, backlog int) (int, *net.TCPAddr, error) {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	if backlog < 1 {
		return -1, nil, fmt.Errorf("listen %s: backlog must be at least 1, got %d", hostPort, backlog)
	}
	fd, addr, err := BindTCP(host, port, true)
	if err != nil {
		return -1, nil, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen %s: %w", hostPort, err)
	}
	return fd, addr, nil
}
