package sockets

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListenFD(t *testing.T) {
	f, addr, err := ListenTCP("127.0.0.1", 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd())) // plain dup: no close-on-exec, as inherited
	if err != nil {
		t.Fatal(err)
	}
	got, err := ListenFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != "fd:"+strconv.Itoa(fd) {
		t.Errorf("name %q", got.Name())
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("adopted fd not close-on-exec: %#x, %v", flags, err)
	}
	if boundAddr(got) != addr.String() {
		t.Errorf("adopted %s, want %s", boundAddr(got), addr)
	}
	got.Close()

	// Wrong fds: refused and left alone.
	p, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	defer w.Close()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cf, err := conn.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	for fd, want := range map[int]string{
		int(p.Fd()):  "not a listening socket",
		int(cf.Fd()): "not a listening socket",
		-1:           "not a file descriptor",
	} {
		if f, err := ListenFD(fd); err == nil {
			f.Close()
			t.Errorf("ListenFD(%d) succeeded", fd)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("FD %d: ", fd)) || !strings.Contains(err.Error(), want) {
			t.Errorf("ListenFD(%d): %v, want %q", fd, err, want)
		}
	}
	if _, err := unix.FcntlInt(cf.Fd(), unix.F_GETFD, 0); err != nil {
		t.Errorf("a refused fd was closed: %v", err)
	}
}

// Error paths that never look at a descriptor, in-process.
func TestListenSystemdErrors(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		pid, fds, want string
	}{
		{"", "", "LISTEN_FDS is not set"},
		{"1", "1", `LISTEN_PID="1" is not this process`},
		{"", "1", `LISTEN_PID="" is not this process`},
		{self, "0", `LISTEN_FDS="0": no sockets passed`},
		{self, "x", `LISTEN_FDS="x": no sockets passed`},
	} {
		t.Setenv("LISTEN_PID", tc.pid)
		t.Setenv("LISTEN_FDS", tc.fds)
		t.Setenv("LISTEN_FDNAMES", "web")
		if f, _, err := ListenSystemd(); err == nil {
			f.Close()
			t.Errorf("ListenSystemd with pid %q fds %q succeeded", tc.pid, tc.fds)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ListenSystemd with pid %q fds %q: %v, want %q", tc.pid, tc.fds, err, tc.want)
		}
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			if v, ok := os.LookupEnv(k); ok {
				t.Errorf("%s=%q left set", k, v)
			}
		}
	}
}

// boundAddr is the local address of a listening socket file, or what is
// wrong.
func boundAddr(f *os.File) string {
	a, err := Addr(f)
	if err != nil {
		return err.Error()
	}
	return a.String()
}

// envActivationHelper makes the test binary play the activated process in
// TestListenSystemd (the os/exec tests' helper-process pattern).
const envActivationHelper = "SOCKETS_TEST_ACTIVATED"

// TestListenSystemd plays systemd for a child process: a UDP socket and a
// TCP listener as fds 3 and 4, and LISTEN_PID set to the child's own pid
// by a shell that then execs it, as systemd does between fork and exec.
// The child adopts the listener by its name and sees the variables gone.
func TestListenSystemd(t *testing.T) {
	if os.Getenv(envActivationHelper) == "1" {
		activatedHelper()
		return
	}
	f, addr, err := ListenTCP("127.0.0.1", 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := pc.(*net.UDPConn).File()
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -test.run='^TestListenSystemd$'`, os.Args[0])
	cmd.Env = append(os.Environ(), envActivationHelper+"=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=metrics:web")
	cmd.ExtraFiles = []*os.File{udp, f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("activated process: %v\n%s", err, out)
	}
	want := fmt.Sprintf("adopted web on %s; left LISTEN_PID=\"\" LISTEN_FDS=\"\" LISTEN_FDNAMES=\"\"", addr)
	if !strings.Contains(string(out), want) {
		t.Errorf("activated process said:\n%s\nwant a line %q", out, want)
	}
}

// activatedHelper is the child of TestListenSystemd: it reports what
// ListenSystemd gave it on stdout.
func activatedHelper() {
	f, name, err := ListenSystemd()
	if err != nil {
		fmt.Println("ListenSystemd:", err)
		os.Exit(1)
	}
	defer f.Close()
	fmt.Printf("adopted %s on %s; left LISTEN_PID=%q LISTEN_FDS=%q LISTEN_FDNAMES=%q\n", name, boundAddr(f),
		os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"))
}
