package worker

import (
	"fmt"
	"net"
	"strconv"

	"demo/sockets"
)

// listenReusePort binds this worker's own listening socket on addr
// (host:port, a concrete port) with SO_REUSEPORT, for `serve --reuse-port`:
// every worker binds the same address and the kernel spreads new
// connections across their sockets by a hash of the client's address. Unlike
// a shared socket, a connection hashed to a worker whose loop is blocked
// waits in that worker's queue even while others are idle.
//
// It returns a raw fd (close-on-exec) that the caller owns; the server makes
// it non-blocking.
func listenReusePort(addr string, backlog int) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return -1, fmt.Errorf("--reuse-port-bind %s: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port == 0 {
		return -1, fmt.Errorf("--reuse-port-bind %s: needs a concrete port, every worker must bind the same one", addr)
	}
	fd, _, err := sockets.ListenReusePort(host, port, backlog)
	return fd, err
}
