package sockets

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"demo/setting"
)

// ListenFD adopts an inherited listening socket for --fd N (a parent such as
// a process manager bound it). It refuses anything but a listening stream
// socket, so a wrong number fails here rather than in every worker. On
// success the returned file owns fd (close-on-exec from now on: workers get
// it as fd 3 only); on error fd is left alone.
func ListenFD(fd int) (*os.File, error) {
	if fd < 0 {
		return nil, setting.Errorf("FD", "%d: not a file descriptor", fd)
	}
	if err := CheckListening(fd); err != nil {
		return nil, setting.Errorf("FD", "%d: %w", fd, err)
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
		if err := CheckListening(fd); err != nil {
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
