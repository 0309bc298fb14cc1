// Package control is the master's inspection channel: a unix socket (0600)
// on which the master answers every connection with one JSON snapshot of its
// workers, and the client side that `demo status` uses to read and print it.
// It sees further than ps: requests, connections, and how long each event
// loop has been stalled and by what.
//
// By default the socket lives in a directory of the user's own (UserDir),
// which both sides refuse to use unless it is safe: another local user who
// could create or replace the socket could feed `demo status` forged rows.
// What the socket says is printed with control characters stripped, so a
// forged row cannot drive the terminal either.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Snapshot is what the master knows about itself and its workers.
type Snapshot struct {
	MasterPID int       `json:"master_pid"`
	Addr      string    `json:"addr"`
	Mode      string    `json:"mode,omitempty"`
	Taken     time.Time `json:"taken"`
	// Refresh is how often each worker reports its counters (Requests,
	// InFlight, Conns) to the master, blocked or not: a count is at most
	// this old.
	Refresh time.Duration `json:"refresh_ns"`
	Workers []Worker      `json:"workers"`
	// LogLinesDropped counts the master's own log lines dropped because
	// its stderr was not being read (logging never makes it wait).
	LogLinesDropped uint64 `json:"log_lines_dropped"`
}

// Worker is one worker's row of `demo status`.
type Worker struct {
	Index int `json:"index"`
	PID   int `json:"pid"`
	// State: starting, ready, blocked (ready, but its event loop has
	// not moved for over a second), draining or killed.
	State  string        `json:"state"`
	Uptime time.Duration `json:"uptime_ns"`
	// Requests, InFlight and Conns are as the worker's loop last
	// published them, which a blocked loop cannot change: they stay
	// true while it is blocked.
	Requests uint64 `json:"requests"`
	InFlight int    `json:"in_flight"`
	Conns    int    `json:"conns"`
	// StalledFor is how long the loop has not beaten now (0 when beating).
	StalledFor time.Duration `json:"stalled_for_ns"`
	// LongestStall and its Culprit: the worst stall seen so far.
	LongestStall time.Duration `json:"longest_stall_ns"`
	Culprit      string        `json:"culprit,omitempty"`
	RSS          int64         `json:"rss_bytes"`
	// LogLinesDropped: the worker's log lines dropped, as the master's.
	LogLinesDropped uint64 `json:"log_lines_dropped"`
}

// Path is where the master for a TCP port (or a unix socket path) listens
// for control connections: derived, so `demo status --port 8000` finds it.
func Path(port int, uds string) string {
	if uds != "" {
		return uds + ".control"
	}
	return filepath.Join(UserDir(), "control-"+strconv.Itoa(port)+".sock")
}

// UserDir is the directory of the user's control sockets:
// $XDG_RUNTIME_DIR/demo when that is set (the login's private runtime
// directory), else demo-<uid> in the temporary directory, which any user
// could have created first: see checkUserDir.
func UserDir() string {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(rt) {
		return filepath.Join(rt, "demo")
	}
	return filepath.Join(os.TempDir(), "demo-"+strconv.Itoa(os.Getuid()))
}

// makeUserDir creates dir (mode 0700) if it does not exist, and checks it.
func makeUserDir(dir string) error {
	switch err := os.Mkdir(dir, 0o700); {
	case err == nil:
		if err := os.Chmod(dir, 0o700); err != nil { // whatever the umask
			return fmt.Errorf("control socket directory: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("control socket directory: %w", err)
	}
	return checkUserDir(dir)
}

// checkUserDir refuses dir unless it is a directory, not a symbolic link,
// owned by us, that nobody else may enter (mode 0700): otherwise someone
// else could put their own socket where ours is expected.
func checkUserDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	var problem string
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		problem = "is a symbolic link"
	case !fi.IsDir():
		problem = "is not a directory"
	case st == nil:
		problem = "has no owner this system reports"
	case int(st.Uid) != os.Geteuid():
		problem = fmt.Sprintf("belongs to uid %d, not to you (uid %d)", st.Uid, os.Geteuid())
	case fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0o700:
		problem = fmt.Sprintf("has mode %04o, not 0700", fi.Mode().Perm())
	default:
		return nil
	}
	fix := "remove it (or chmod 700 it if it is yours)"
	if !filepath.IsAbs(os.Getenv("XDG_RUNTIME_DIR")) {
		fix += ", set XDG_RUNTIME_DIR"
	}
	return fmt.Errorf("control socket directory %s %s, so another user could replace the socket: %s, or pass --control PATH", dir, problem, fix)
}

// Server answers control connections until Close.
type Server struct {
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

// Listen creates the control socket at path (its directory 0700, the socket
// 0600: only the user who started the master may inspect it). A stale file
// left by a dead master is replaced; one a live master answers on is not.
// In UserDir, the directory must pass checkUserDir.
func Listen(path string) (*Server, error) {
	if dir := filepath.Dir(path); dir == UserDir() {
		if err := makeUserDir(dir); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another master is running", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{ln: ln, path: path}, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers each connection with snapshot() until Close. snapshot must
// be safe to call from Serve's goroutine.
func (s *Server) Serve(snapshot func() Snapshot) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return // closed
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_ = json.NewEncoder(c).Encode(snapshot())
			c.Close()
		}
	}()
}

// Close stops serving, waits for Serve's goroutine and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close() // also unlinks the path (net.UnixListener's default)
	s.wg.Wait()
	return err
}

// Fetch reads one snapshot from the master listening at path. In UserDir,
// the directory must pass checkUserDir.
func Fetch(ctx context.Context, path string) (Snapshot, error) {
	if dir := filepath.Dir(path); dir == UserDir() {
		if err := checkUserDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Snapshot{}, err
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Snapshot{}, fmt.Errorf("no demo master at %s (is `demo serve` running on that port?)", path)
		}
		return Snapshot{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var snap Snapshot
	if err := json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&snap); err != nil {
		return Snapshot{}, fmt.Errorf("read status from %s: %w", path, err)
	}
	return snap, nil
}
