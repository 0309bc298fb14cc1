package testkit

import (
	"net"
	"os"
	"testing"
)

// ListenerFile binds 127.0.0.1:0 and returns the listening socket as a
// file for exec.Cmd.ExtraFiles, with its address. The caller's copy is
// closed when the test ends; a child keeps its own.
func ListenerFile(tb testing.TB) (*os.File, *net.TCPAddr) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close() // the file below is a duplicate
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f, ln.Addr().(*net.TCPAddr)
}
