package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "demo.sock")
	f, err := ListenUnix(path, 16)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file: %v, %v; want a socket with mode 0660", fi.Mode(), err)
	}
	if flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("FD_CLOEXEC not set: %#x, %v", flags, err)
	}
	// A real listener.
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s, err := ln.Accept(); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}

	// Somebody listens: refused, and the file stays.
	if _, err := ListenUnix(path, 16); err == nil || !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "another server listens on it") {
		t.Errorf("ListenUnix on a live socket: %v, want 'address already in use (another server listens on it)'", err)
	}
	// Gone (a crashed server leaves its file): the stale file is replaced.
	ln.Close()
	f.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("closing did not leave the stale file this test needs: %v", err)
	}
	f2, err := ListenUnix(path, 16)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	f2.Close()

	// Anything but a socket is never removed.
	regular := filepath.Join(dir, "data")
	if err := os.WriteFile(regular, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		regular:                        "a regular file is there, not a socket; refusing to remove it",
		dir:                            "a directory is there",
		filepath.Join(dir, "no", "s"):  "bind " + filepath.Join(dir, "no", "s") + ": no such file or directory",
		"/" + strings.Repeat("x", 120): "path longer than 107 bytes",
		"":                             "empty socket path",
	} {
		if f, err := ListenUnix(p, 16); err == nil {
			f.Close()
			t.Errorf("ListenUnix(%q) succeeded", p)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("ListenUnix(%q): %v, want %q", p, err, want)
		}
	}
	if data, err := os.ReadFile(regular); err != nil || string(data) != "precious" {
		t.Errorf("regular file touched: %q, %v", data, err)
	}
}

// unixClient talks HTTP over the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

func TestMasterOnUnixSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "demo.sock")
	// A previous master crashed and left its socket file behind.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	m := startMasterEnv(t, []string{envTestListen + "=unix:" + path}, 2, 5*time.Second)
	pids := m.waitRunning()
	if m.url != "unix:"+path {
		t.Errorf("running on %q, want unix:%s", m.url, path)
	}
	resp, err := unixClient(path).Get("http://demo/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file mode %v, %v; want 0660", fi.Mode(), err)
	}
	m.stopCleanly()
	for _, pid := range pids {
		waitGone(t, pid, time.Second)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after shutdown: %v", err)
	}
}

// The master leaves alone a file that replaced its socket meanwhile.
func TestSocketFileRemovalChecksInode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.sock")
	f, err := ListenUnix(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sf := watchSocketFile(path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := ListenUnix(path, 4) // someone else's socket now
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sf.remove()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("removed a socket file that was not ours: %v", err)
	}
	// Ours is removed.
	sf = watchSocketFile(path)
	sf.remove()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there: %v", err)
	}
}

func TestListenFD(t *testing.T) {
	f, addr, err := Listen("127.0.0.1", 0, 8)
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
		} else if !strings.Contains(err.Error(), fmt.Sprintf("--fd %d: ", fd)) || !strings.Contains(err.Error(), want) {
			t.Errorf("ListenFD(%d): %v, want %q", fd, err, want)
		}
	}
	if _, err := unix.FcntlInt(cf.Fd(), unix.F_GETFD, 0); err != nil {
		t.Errorf("a refused fd was closed: %v", err)
	}
}

// --fd N for real: the master inherits a listening socket as fd 3 from its
// parent (this test), and its workers serve on it.
func TestMasterWithInheritedFD(t *testing.T) {
	t.Parallel()
	f, addr, err := Listen("127.0.0.1", 0, 16)
	if err != nil {
		t.Fatal(err)
	}
	m := startMasterFiles(t, []string{envTestListen + "=fd:3"}, []*os.File{f}, 2, 5*time.Second)
	f.Close() // the master has it now
	pids := m.waitRunning()
	if m.url != "http://"+addr.String() {
		t.Errorf("running on %s, want http://%s", m.url, addr)
	}
	body, err := get(m.url + "/")
	if err != nil || (body != strconv.Itoa(pids[1]) && body != strconv.Itoa(pids[2])) {
		t.Errorf("got %q, %v; want a worker's pid", body, err)
	}
	for _, l := range m.all(`test-worker \[\d+\] fds: (.*)`) {
		if l[1] != "0 1 2 3 4 5" {
			t.Errorf("worker inherited fds %q, want 0 1 2 3 4 5", l[1])
		}
	}
	m.stopCleanly()
	if _, err := get(m.url + "/"); err == nil {
		t.Errorf("the inherited socket still accepts after shutdown")
	}
}

// Socket activation for real: this test plays systemd. It passes a UDP
// socket and a TCP listener as fds 3 and 4; a wrapper process sets
// LISTEN_PID to its own pid and execs the master, as systemd does between
// fork and exec.
func TestSystemdActivation(t *testing.T) {
	t.Parallel()
	f, addr, err := Listen("127.0.0.1", 0, 16)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := pc.(*net.UDPConn).File()
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		envTestActivate + "=1", envTestListen + "=systemd",
		"LISTEN_FDS=2", "LISTEN_FDNAMES=metrics:web",
		"LISTEN_PID=1", // wrong on purpose: the wrapper must set it
	}
	m := startMasterFiles(t, env, []*os.File{udp, f}, 2, 5*time.Second, "print-env")
	f.Close()
	udp.Close()
	m.waitFor(`socket activation: using "web"`, 10*time.Second)
	pids := m.waitRunning()
	if m.url != "http://"+addr.String() {
		t.Errorf("running on %s, want http://%s", m.url, addr)
	}
	body, err := get(m.url + "/")
	if err != nil || (body != strconv.Itoa(pids[1]) && body != strconv.Itoa(pids[2])) {
		t.Errorf("got %q, %v; want a worker's pid", body, err)
	}
	// Workers neither see the variables nor the unused UDP socket.
	envs := m.all(`test-worker \[\d+\] env (.*)`)
	if len(envs) != 2 {
		t.Fatalf("%d env reports, want 2", len(envs))
	}
	for _, e := range envs {
		if e[1] != `LISTEN_PID="" LISTEN_FDS="" LISTEN_FDNAMES=""` {
			t.Errorf("worker saw %s", e[1])
		}
	}
	for _, l := range m.all(`test-worker \[\d+\] fds: (.*)`) {
		if l[1] != "0 1 2 3 4 5" {
			t.Errorf("worker inherited fds %q, want 0 1 2 3 4 5", l[1])
		}
	}
	m.stopCleanly()
}

func TestSystemdActivationMeantForAnother(t *testing.T) {
	t.Parallel()
	f, _, err := Listen("127.0.0.1", 0, 16)
	if err != nil {
		t.Fatal(err)
	}
	// No wrapper: LISTEN_PID names another process.
	m := startMasterFiles(t, []string{envTestListen + "=systemd", "LISTEN_FDS=1", "LISTEN_PID=1"}, []*os.File{f}, 1, 5*time.Second)
	f.Close()
	if code := m.waitExit(10 * time.Second); code == 0 {
		t.Errorf("master exit code 0, want non-zero")
	}
	m.waitFor(`test master: socket activation: LISTEN_PID="1" is not this process \(\d+\)`, time.Second)
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

// reusePortListen binds a listener the way a --reuse-port worker does.
func reusePortListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

func TestReservePort(t *testing.T) {
	res, addr, err := ReservePort("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if addr.Port == 0 {
		t.Fatalf("reserved %v, want a concrete port", addr)
	}
	fd := int(res.Fd())
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || v == 0 {
		t.Errorf("SO_REUSEPORT = %d, %v", v, err)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 0 {
		t.Errorf("the reservation listens (SO_ACCEPTCONN %d, %v): it would take connections", v, err)
	}
	// With nobody listening yet, a connection is refused: the reservation
	// takes none.
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Errorf("connected to a port only reserved")
	}
	// Workers bind it too, and share the connections.
	var lns []net.Listener
	for range 2 {
		ln, err := reusePortListen(addr.String())
		if err != nil {
			t.Fatalf("worker-style bind on the reserved port: %v", err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A plain listener cannot take the port.
	if f, _, err := Listen("127.0.0.1", addr.Port, 8); err == nil {
		f.Close()
		t.Errorf("a plain Listen took a reserved port")
	}
	// Nor can a second --reuse-port server, though the kernel would let it.
	if f, _, err := ReservePort("127.0.0.1", addr.Port); err == nil {
		f.Close()
		t.Errorf("a second ReservePort shares a port that has listeners")
	} else if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "another server listens there with SO_REUSEPORT") {
		t.Errorf("second ReservePort: %v", err)
	}
	// A port held by a plain listener: the bind itself fails.
	plain, paddr, err := Listen("127.0.0.1", 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	want := fmt.Sprintf("bind 127.0.0.1:%d: address already in use", paddr.Port)
	if f, _, err := ReservePort("127.0.0.1", paddr.Port); err == nil {
		f.Close()
		t.Errorf("ReservePort took a port a plain listener holds")
	} else if err.Error() != want {
		t.Errorf("ReservePort on a busy port: %v, want %q", err, want)
	}
}

// With one shared socket, a frozen worker's share of new connections goes
// to the others; with SO_REUSEPORT the kernel hashes some to the frozen one
// and they wait. The difference the README explains, measured.
func TestFrozenWorkerSharedVersusReusePort(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"shared", "reuseport"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var env []string
			if mode == "reuseport" {
				env = []string{envTestListen + "=reuseport"}
			}
			m := startMasterEnv(t, env, 2, 5*time.Second)
			pids := m.waitRunning()
			wantFDs := "0 1 2 3 4 5"
			if mode == "reuseport" {
				wantFDs = "0 1 2 4 5" // no shared fd 3: each binds its own
			}
			for _, l := range m.all(`test-worker \[\d+\] fds: (.*)`) {
				if l[1] != wantFDs {
					t.Errorf("worker inherited fds %q, want %s", l[1], wantFDs)
				}
			}
			if err := syscall.Kill(pids[2], syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			waitStopped(t, pids[2])
			const conns = 24
			var wg sync.WaitGroup
			var mu sync.Mutex
			stuck := 0
			c := &http.Client{Timeout: 700 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
			for range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := c.Get(m.url + "/")
					if err == nil {
						resp.Body.Close()
					}
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						stuck++
					}
				}()
			}
			wg.Wait()
			if err := syscall.Kill(pids[2], syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s socket, worker 2 frozen: %d of %d new connections got no answer within 700ms", mode, stuck, conns)
			switch {
			case mode == "shared" && stuck != 0:
				t.Errorf("%d connections waited for the frozen worker despite the shared socket", stuck)
			case mode == "reuseport" && stuck == 0:
				t.Errorf("no connection was hashed to the frozen worker (chance 2^-%d)", conns)
			}
			m.stopCleanly()
		})
	}
}
