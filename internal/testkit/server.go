package testkit

import (
	"net"
	"sync"
	"testing"
)

// RawServer accepts TCP connections on 127.0.0.1:0 and hands each to its
// handler on a goroutine of its own, until the test ends: then quit is
// closed (a handler waiting on it gives up), the listener closes, and every
// handler is waited for.
type RawServer struct {
	ln   net.Listener
	quit chan struct{}
	wg   sync.WaitGroup
}

// StartRawServer starts a RawServer; handle owns c, which is closed once it
// returns.
func StartRawServer(tb testing.TB, handle func(c net.Conn, quit <-chan struct{})) *RawServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &RawServer{ln: ln, quit: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c, s.quit)
			}()
		}
	}()
	tb.Cleanup(func() {
		close(s.quit)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// Addr is where the server listens, "127.0.0.1:PORT".
func (s *RawServer) Addr() string { return s.ln.Addr().String() }

// URL is the server's http:// URL.
func (s *RawServer) URL() string { return "http://" + s.Addr() }
