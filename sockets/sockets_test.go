package sockets

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBindTCPPicksAPortAndReusePortShares(t *testing.T) {
	fd, addr, err := BindTCP("127.0.0.1", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if addr.Port == 0 || addr.IP.String() != "127.0.0.1" {
		t.Fatalf("bound %v, want 127.0.0.1 and a concrete port", addr)
	}
	// With SO_REUSEPORT a second socket may bind the same port...
	fd2, _, err := BindTCP("127.0.0.1", addr.Port, true)
	if err != nil {
		t.Fatalf("second SO_REUSEPORT bind: %v", err)
	}
	unix.Close(fd2)
	// ...without it, not, once the port is listened on.
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := BindTCP("127.0.0.1", addr.Port, false); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("plain bind of a taken port: %v", err)
	}
	if _, _, err := BindTCP("127.0.0.1", 70000, false); err == nil {
		t.Fatal("port 70000 accepted")
	}
}

func TestCheckListening(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	uds, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer uds.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	bound, _, err := BindTCP("127.0.0.1", 0, false) // bound, never listening
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bound)

	fdOf := func(f interface{ File() (*os.File, error) }) int {
		file, err := f.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { file.Close() })
		return int(file.Fd())
	}
	for _, tc := range []struct {
		name string
		fd   int
		ok   bool
	}{
		{"tcp listener", fdOf(tcp.(*net.TCPListener)), true},
		{"unix listener", fdOf(uds.(*net.UnixListener)), true},
		{"udp socket", fdOf(udp.(*net.UDPConn)), false},
		{"pipe", int(r.Fd()), false},
		{"bound, not listening", bound, false},
		{"closed fd", 999, false},
	} {
		if err := CheckListening(tc.fd); (err == nil) != tc.ok {
			t.Errorf("%s: CheckListening = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestAddrOfTCPAndUnixSockets(t *testing.T) {
	f, addr, err := ListenTCP("127.0.0.1", 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := Addr(f); err != nil || got.String() != addr.String() || got.Network() != "tcp" {
		t.Errorf("Addr of a TCP socket: %v %v, want %s", got, err, addr)
	}
	path := filepath.Join(t.TempDir(), "s.sock")
	u, err := ListenUnix(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got, err := Addr(u); err != nil || got.String() != path || got.Network() != "unix" {
		t.Errorf("Addr of a unix socket: %v %v, want %s", got, err, path)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if got, err := Addr(r); err == nil {
		t.Errorf("Addr of a pipe: %v, want an error", got)
	}
}
