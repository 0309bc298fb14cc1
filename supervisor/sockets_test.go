package supervisor

import (
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"demo/internal/testkit"
	"demo/sockets"
)

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
	resp, err := testkit.UnixClient(path).Get("http://demo/")
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
	f, err := sockets.ListenUnix(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sf := watchSocketFile(path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := sockets.ListenUnix(path, 4) // someone else's socket now
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

// --fd N for real: the master inherits a listening socket as fd 3 from its
// parent (this test), and its workers serve on it.
func TestMasterWithInheritedFD(t *testing.T) {
	t.Parallel()
	f, addr, err := sockets.ListenTCP("127.0.0.1", 0, 16)
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
	f, addr, err := sockets.ListenTCP("127.0.0.1", 0, 16)
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
	f, _, err := sockets.ListenTCP("127.0.0.1", 0, 16)
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
