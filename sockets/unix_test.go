package sockets

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		"/" + strings.Repeat("x", 120): ": longer than 107 bytes",
		"":                             "Path is empty",
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
