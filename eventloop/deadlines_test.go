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
	// Long enough that every connection is open before the first one's
	// clock runs out, on a busy machine too.
	const timeout = 500 * time.Millisecond
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
	sendWhileHeld(t, ts, conns, 2*timeout, get)
}

// sendWhileHeld holds ts's loop for hold and, meanwhile, sends rest on
// every connection; each must then be answered 200.
func sendWhileHeld(t *testing.T, ts *testServer, conns []net.Conn, hold time.Duration, rest string) {
	t.Helper()
	held := make(chan struct{})
	ts.loop.Post(func() {
		close(held)
		time.Sleep(hold)
	})
	<-held
	for _, c := range conns {
		send(t, c, rest)
	}
	for i, c := range conns {
		if got := readResp(t, bufio.NewReader(c), "GET"); got.status != 200 {
			t.Fatalf("connection %d of %d: status %d", i+1, len(conns), got.status)
		}
	}
}

// TestHeaderClockSparesAnUnreadHeader: the same for the request-header
// clock. Each connection sent the start of its header before the loop was
// held and the rest while it was (all within the timeout); the header
// completes once the loop reads it, and is served, not answered 408.
func TestHeaderClockSparesAnUnreadHeader(t *testing.T) {
	const timeout = 500 * time.Millisecond // as above
	ts := startServer(t, ServerConfig{RequestHeaderTimeout: timeout})
	const n = 3 * maxEvents
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = ts.dial()
		send(t, conns[i], "GET /echo HTTP/1.1\r\n")
	}
	ts.eventually("every header begun", func() bool {
		begun := 0
		for c := range ts.srv.conns {
			if c.header.running() {
				begun++
			}
		}
		return begun == n
	})
	sendWhileHeld(t, ts, conns, 2*timeout, "Host: x\r\n\r\n")
	// A header that stays incomplete is still refused at its deadline.
	c := ts.dial()
	send(t, c, "GET /echo HTTP/1.1\r\n")
	if got := readResp(t, bufio.NewReader(c), "GET"); got.status != 408 {
		t.Fatalf("an incomplete header: status %d, want 408", got.status)
	}
}
