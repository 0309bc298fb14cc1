package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/eventloop"
	"demo/internal/testkit"
)

// TestCallCancelledWhenItsClientGoes wires the two halves together the way
// a worker's async handler does: a request served by an eventloop.Server
// makes a call to an upstream that never answers, and cancels it when its
// own client leaves (OnClientGone). The client hanging up must free both
// sockets at once — the upstream sees the call's connection close, and the
// process holds no more descriptors than before — instead of holding them
// until the call's timeout.
func TestCallCancelledWhenItsClientGoes(t *testing.T) {
	e := newEnv(t, Config{})
	upstreamSaw := make(chan error, 1)
	upstreamHas := make(chan struct{})
	upstream := testkit.StartRawServer(t, func(c net.Conn, quit <-chan struct{}) {
		if _, _, err := readRequest(c); err != nil {
			upstreamSaw <- err
			return
		}
		close(upstreamHas)
		// Never answer; report when the caller closes its side.
		_, err := io.Copy(io.Discard, c)
		upstreamSaw <- err
	})

	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd) })
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 16); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}

	callErr := make(chan error, 1)
	var srv *eventloop.Server
	e.onLoop(func() {
		srv, err = eventloop.NewServer(e.l, lfd, eventloop.ServerConfig{}, func(w *eventloop.ResponseWriter, r *eventloop.Request) {
			cancel := e.c.Get(upstream.URL()+"/", time.Hour, func(resp *Response, err error) {
				callErr <- err
				w.Respond(http.StatusBadGateway, "text/plain", nil) // nobody is left to read it
			})
			w.OnClientGone(cancel)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.onLoop(srv.Close) })
	fdsBefore := countFDs(t)

	c, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Wait for the call to be in flight: the upstream has the request.
	select {
	case <-upstreamHas:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call never started")
	}
	// The test's client socket, the server's end of it, the call's socket
	// and the upstream's end of that: all in this process.
	if n := countFDs(t); n != fdsBefore+4 {
		t.Fatalf("%d descriptors while the call is in flight, %d before, want 4 more", n, fdsBefore)
	}
	c.Close()

	select {
	case err := <-callErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the call ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call was not cancelled when its client left")
	}
	select {
	case err := <-upstreamSaw:
		if err != nil {
			t.Fatalf("the upstream saw %v, want a clean close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection stayed open")
	}
	var st eventloop.ServerStats
	for deadline := time.Now().Add(5 * time.Second); ; {
		e.onLoop(func() { st = srv.Stats() })
		if st.Conns == 0 && st.InFlight == 0 && countFDs(t) == fdsBefore {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the client left: %+v, %d descriptors open, %d before", st, countFDs(t), fdsBefore)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
