package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"demo/sockets"
)

// unixPathMax is sizeof(sockaddr_un.sun_path) minus its NUL on Linux.
const unixPathMax = 107

// ListenUnix listens on a unix socket at path for --uds. A socket file left
// behind by a previous run that crashed is removed, but only after a connect
// proves nobody listens on it; any other file there is refused, never
// removed. The socket gets mode 0660 (owner and group may connect) before it
// listens, so no connection can slip in under the umask's mode. Put path in
// Config.UnixSocket too: Run removes the file when it stops.
func ListenUnix(path string, backlog int) (*os.File, error) {
	switch {
	case path == "":
		return nil, errors.New("listen unix: empty socket path")
	case len(path) > unixPathMax:
		return nil, fmt.Errorf("listen unix %s: path longer than %d bytes", path, unixPathMax)
	case backlog < 1:
		return nil, fmt.Errorf("listen unix %s: backlog must be at least 1, got %d", path, backlog)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket for %s: %w", path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	// From here on the file is ours to remove if anything fails.
	if err := os.Chmod(path, 0o660); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("listen unix %s: %w", path, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "unix:"+path), nil
}

// removeStaleSocket removes the socket file at path if nothing listens on it.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen unix %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen unix %s: a %s is there, not a socket; refusing to remove it", path, fileKind(fi.Mode()))
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("listen unix %s: %w", path, err)
	}
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	unix.Close(fd)
	switch {
	case err == nil || errors.Is(err, unix.EAGAIN):
		// EAGAIN: its backlog is full, which still means it listens.
		return fmt.Errorf("listen unix %s: %w (another server listens on it)", path, unix.EADDRINUSE)
	case errors.Is(err, unix.ECONNREFUSED):
		// Stale: whoever bound it is gone.
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("listen unix %s: remove stale socket: %w", path, err)
		}
		return nil
	default:
		return fmt.Errorf("listen unix %s: probe existing socket: %w", path, err)
	}
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "file of mode " + m.String()
}

// socketFile is the unix socket file Run removes when it stops. It is
// identified by inode when Run starts, so that a file someone else has put
// at the same path since (another server's socket) is left alone.
type socketFile struct {
	path     string
	dev, ino uint64
	removed  bool
}

func watchSocketFile(path string) *socketFile {
	f := &socketFile{path: path}
	var st unix.Stat_t
	if path == "" || unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		f.removed = true // nothing of ours to remove
		return f
	}
	f.dev, f.ino = st.Dev, st.Ino
	return f
}

// remove unlinks the socket file once, if it is still the one we bound.
// New connections then fail at once instead of waiting on a socket nobody
// will accept from.
func (f *socketFile) remove() {
	if f.removed {
		return
	}
	f.removed = true
	var st unix.Stat_t
	if unix.Lstat(f.path, &st) == nil && st.Dev == f.dev && st.Ino == f.ino {
		_ = unix.Unlink(f.path)
	}
}

// ListenFD adopts an inherited listening socket for --fd N (a parent such as
// a process manager bound it). It refuses anything but a listening stream
// socket, so a wrong number fails here rather than in every worker. On
// success the returned file owns fd (close-on-exec from now on: workers get
// it as fd 3 only); on error fd is left alone.
func ListenFD(fd int) (*os.File, error) {
	if fd < 0 {
		return nil, fmt.Errorf("--fd %d: not a file descriptor", fd)
	}
	if err := sockets.CheckListening(fd); err != nil {
		return nil, fmt.Errorf("--fd %d: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "fd:"+strconv.Itoa(fd)), nil
}

// systemd's socket-activation protocol (sd_listen_fds(3)).
const (
	envListenPID     = "LISTEN_PID"
	envListenFDs     = "LISTEN_FDS"
	envListenFDNames = "LISTEN_FDNAMES"
	listenFDsStart   = 3
)

// ListenSystemd adopts the first listening stream socket systemd passed
// (socket activation): LISTEN_FDS sockets from fd 3 on, meant for this
// process only if LISTEN_PID is our pid, named by the colon-separated
// LISTEN_FDNAMES. It returns the socket and its name ("" if unnamed).
//
// The three variables are unset whatever the outcome, so workers (and their
// children) never believe the sockets are meant for them. Passed fds are
// made close-on-exec; ones not used are left open rather than closed,
// because closing a number that LISTEN_FDS merely claims could close one of
// the runtime's own descriptors.
func ListenSystemd() (*os.File, string, error) {
	pidStr, fdsStr, namesStr := os.Getenv(envListenPID), os.Getenv(envListenFDs), os.Getenv(envListenFDNames)
	for _, k := range []string{envListenPID, envListenFDs, envListenFDNames} {
		os.Unsetenv(k)
	}
	if fdsStr == "" {
		return nil, "", fmt.Errorf("socket activation: %s is not set (not started by systemd with a .socket unit?)", envListenFDs)
	}
	if pid, err := strconv.Atoi(pidStr); err != nil || pid != os.Getpid() {
		return nil, "", fmt.Errorf("socket activation: %s=%q is not this process (%d): the sockets were meant for another one", envListenPID, pidStr, os.Getpid())
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 1 {
		return nil, "", fmt.Errorf("socket activation: %s=%q: no sockets passed", envListenFDs, fdsStr)
	}
	var names []string
	if namesStr != "" {
		names = strings.Split(namesStr, ":")
	}
	var why []string
	for i := range n {
		fd := listenFDsStart + i
		unix.CloseOnExec(fd)
		if err := sockets.CheckListening(fd); err != nil {
			why = append(why, err.Error())
			continue
		}
		name := ""
		if i < len(names) {
			name = names[i]
		}
		return os.NewFile(uintptr(fd), "systemd:"+name), name, nil
	}
	return nil, "", fmt.Errorf("socket activation: none of the %d passed fds is a listening stream socket (%s)", n, strings.Join(why, "; "))
}
