package sockets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"demo/setting"
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
		return nil, setting.Errorf("Path", "is empty: want the socket file's path")
	case len(path) > unixPathMax:
		return nil, setting.Errorf("Path", "%s: longer than %d bytes", path, unixPathMax)
	case backlog < 1:
		return nil, setting.Errorf("Backlog", "must be at least 1, got %d", backlog)
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
