package supervisor

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"demo/sockets"
)

// adoptListener returns a private, close-on-exec duplicate of f that
// exec.Cmd can pass at every spawn without side effects. An *os.File from
// net.Listener.File() switches its socket to blocking mode each time Fd() is
// called (exec calls it at every spawn), and O_NONBLOCK belongs to the file
// description every worker shares: a respawn would turn the other workers'
// accept into a blocking call. The duplicate is made blocking once, before
// any worker exists, which also keeps it out of the master's netpoller (the
// master never accepts); each worker sets the mode it needs.
func adoptListener(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("supervisor: listener: %w", err)
	}
	dup := -1
	var opErr error
	err = rc.Control(func(fd uintptr) {
		if opErr = sockets.CheckListening(int(fd)); opErr != nil {
			opErr = fmt.Errorf("%s: %w", f.Name(), opErr)
			return
		}
		dup, opErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return nil, fmt.Errorf("supervisor: listener: %w", err)
	}
	if err := unix.SetNonblock(dup, false); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("supervisor: listener: %w", err)
	}
	return os.NewFile(uintptr(dup), f.Name()), nil
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
