package control

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testSnapshot() Snapshot {
	return Snapshot{
		MasterPID: 100, Addr: "http://127.0.0.1:8000", Taken: time.Unix(1764236400, 0).UTC(),
		Refresh: 500 * time.Millisecond,
		Workers: []Worker{
			{Index: 1, PID: 101, State: "ready", Uptime: 62 * time.Second, Requests: 7, InFlight: 1, Conns: 2,
				StalledFor: 3200 * time.Millisecond, LongestStall: 20 * time.Second,
				Culprit: "GET / (request 42) worker.(*app).mixed → net/http.(*Client).Do", RSS: 8 << 20},
			{Index: 2, PID: 102, State: "starting"},
		},
	}
}

func TestServeAndFetchOverARealSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(testSnapshot)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another master") {
		t.Errorf("second Listen on a live socket: %v, want 'another master'", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := Fetch(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := testSnapshot()
	if got.MasterPID != want.MasterPID || len(got.Workers) != 2 || got.Workers[0] != want.Workers[0] {
		t.Errorf("fetched %+v, want %+v", got, want)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left behind after Close: %v", err)
	}
	if _, err := Fetch(ctx, path); err == nil || !strings.Contains(err.Error(), "no demo master") {
		t.Errorf("Fetch with no master: %v", err)
	}
}

func TestListenReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil { // left by a dead master
		t.Fatal(err)
	}
	srv, err := Listen(path)
	if err != nil {
		t.Fatalf("stale file not replaced: %v", err)
	}
	srv.Close()
}

func TestRenderShowsEveryWorker(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, testSnapshot()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"master 100", "STALLED NOW", "101", "ready", "1m2s", "3.2s", "20s", "8.0 MiB", "net/http.(*Client).Do", "starting"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 4 {
		t.Errorf("%d lines, want title, header and 2 rows:\n%s", lines, out)
	}
}

// TestRenderOrdersBySlot: a replacement's row (slot 1, a new pid, listed
// last by the master) is printed with its slot; one worker is "1 worker".
func TestRenderOrdersBySlot(t *testing.T) {
	snap := testSnapshot()
	snap.Workers[0], snap.Workers[1] = snap.Workers[1], snap.Workers[0]
	snap.Workers = append(snap.Workers, Worker{Index: 1, PID: 103, State: "starting"})
	var b bytes.Buffer
	if err := Render(&b, snap); err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n")[2:] {
		pids = append(pids, strings.Fields(line)[1])
	}
	if got := strings.Join(pids, " "); got != "101 103 102" {
		t.Errorf("rows in pid order %s, want slot 1's two (101, 103 in the order given) before slot 2's 102:\n%s", got, b.String())
	}
	snap.Workers = snap.Workers[:1]
	b.Reset()
	if err := Render(&b, snap); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(b.String(), "\n"); !strings.HasSuffix(first, "· 1 worker") {
		t.Errorf("title %q, want it to end in \"· 1 worker\"", first)
	}
}

func TestPathIsDerivedFromThePort(t *testing.T) {
	if a, b := Path(8000, ""), Path(8001, ""); a == b || !strings.HasSuffix(a, "control-8000.sock") {
		t.Errorf("paths %q and %q", a, b)
	}
	if p := Path(0, "/run/app.sock"); p != "/run/app.sock.control" {
		t.Errorf("uds control path %q", p)
	}
}

// userDir points UserDir at a fresh directory of the test's and returns it.
func userDir(t *testing.T) string {
	t.Helper()
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	if got := UserDir(); got != filepath.Join(rt, "demo") {
		t.Fatalf("UserDir %q under XDG_RUNTIME_DIR %q", got, rt)
	}
	return filepath.Join(rt, "demo")
}

func TestUserDirIsCreatedPrivate(t *testing.T) {
	dir := userDir(t)
	srv, err := Listen(Path(8000, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("created %v (%v), want a directory with mode 0700", fi.Mode(), err)
	}
	srv.Serve(testSnapshot)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Fetch(ctx, Path(8000, "")); err != nil {
		t.Error(err)
	}
}

func TestXDGRuntimeDirMustBeAbsolute(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "relative/dir")
	if dir := UserDir(); !filepath.IsAbs(dir) || strings.Contains(dir, "relative") {
		t.Errorf("UserDir %q from a relative XDG_RUNTIME_DIR", dir)
	}
}

// TestUnsafeUserDirIsRefused: a directory someone else could write to, or
// point elsewhere, is used neither by the master nor by `demo status`.
func TestUnsafeUserDirIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		make       func(t *testing.T, dir string)
	}{
		{"world-writable", "has mode 0777, not 0700", func(t *testing.T, dir string) {
			mkdir(t, dir, 0o777)
		}},
		{"group-readable", "has mode 0750, not 0700", func(t *testing.T, dir string) {
			mkdir(t, dir, 0o750)
		}},
		{"symlink", "is a symbolic link", func(t *testing.T, dir string) {
			target := t.TempDir() // 0700, ours: only the link is wrong
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
		}},
		{"file", "is not a directory", func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"someone else's", "belongs to uid 65534", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("only root can give a directory to another user")
			}
			mkdir(t, dir, 0o700)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := userDir(t)
			tc.make(t, dir)
			_, err := Listen(Path(8000, ""))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("Listen: %v, want it to say %q about %s", err, tc.want, dir)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := Fetch(ctx, Path(8000, "")); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Fetch: %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// TestRenderStripsControlCharacters: a forged snapshot cannot move the
// cursor, recolour, retitle or clear the terminal of whoever runs
// `demo status`.
func TestRenderStripsControlCharacters(t *testing.T) {
	snap := testSnapshot()
	snap.Addr = "http://127.0.0.1:8000\x1b]0;owned\x07"
	snap.Workers[0].State = "ready\x1b[2J"
	snap.Workers[0].Culprit = "GET / \x1b[31mred\x1b[0m\u009b31m\r\nforged row\u202eevil\x7f\xff"
	var b bytes.Buffer
	if err := Render(&b, snap); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\r", "\u202e", "\x7f", "\xff"} {
		if strings.Contains(out, bad) {
			t.Errorf("output contains %q:\n%q", bad, out)
		}
	}
	for _, want := range []string{"http://127.0.0.1:8000]0;owned", "ready[2J", "GET / [31mred[0m31mforged rowevil\ufffd"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%q", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 4 {
		t.Errorf("%d lines, want 4: a forged newline must not add a row:\n%s", lines, out)
	}
}

func TestRenderNamesWhoDroppedLogLines(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, testSnapshot()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "dropped") {
		t.Errorf("a footnote without drops:\n%s", b.String())
	}
	snap := testSnapshot()
	snap.LogLinesDropped = 12
	snap.Workers[1].LogLinesDropped = 3400
	b.Reset()
	if err := Render(&b, snap); err != nil {
		t.Fatal(err)
	}
	if want := "log lines dropped because stderr was not being read: master 12 · worker 2 [102] 3400\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("got\n%s\nwant it to end with %q", b.String(), want)
	}
}
