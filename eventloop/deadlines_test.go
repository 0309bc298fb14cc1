package eventloop

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestKeepAliveClockSparesAnUnreadRequest: a loop that was held up (a
// blocking handler, the article's case, or a burst of more ready sockets
// than one epoll_wait returns) runs expired timers after each batch of
// events. A connection whose request arrived in time but is not read yet
// is not idle: its keep-alive clock must not close it — closing a socket
// with unread input resets it, and the client loses the request.
func TestKeepAliveClockSparesAnUnreadRequest(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := startServer(t, ServerConfig{KeepAliveTimeout: timeout})
	// More connections than one epoll_wait returns (maxEvents).
	const n = 3 * maxEvents
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = ts.dial()
	}
	ts.eventually("every connection accepted", func() bool { return ts.srv.Stats().Conns == n })

	// Hold the loop past every connection's keep-alive deadline, the
	// requests arriving meanwhile, well within it.
	held := make(chan struct{})
	ts.loop.Post(func() {
		close(held)
		time.Sleep(2 * timeout)
	})
	<-held
	for _, c := range conns {
		send(t, c, get)
	}
	for i, c := range conns {
		if got := readResp(t, bufio.NewReader(c), "GET"); got.status != 200 {
			t.Fatalf("connection %d of %d: status %d", i+1, n, got.status)
		}
	}
}
