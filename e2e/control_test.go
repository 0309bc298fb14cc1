package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"demo/control"
)

// TestServeRefusesAnUnsafeControlDirectory: a control socket directory
// another user could write to (or point elsewhere) is refused with one line
// saying what is wrong and how to fix it, exit 1 — the environment is at
// fault, not a flag — before any worker starts.
func TestServeRefusesAnUnsafeControlDirectory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
		make       func(dir string) error
	}{
		{"mode 0777", "has mode 0777, not 0700", func(dir string) error {
			if err := os.Mkdir(dir, 0o777); err != nil {
				return err
			}
			return os.Chmod(dir, 0o777)
		}},
		{"symlink", "is a symbolic link", func(dir string) error {
			return os.Symlink(t.TempDir(), dir)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := t.TempDir()
			dir := filepath.Join(rt, "demo")
			if err := tc.make(dir); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(demoBin, "serve", "--port", "0")
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+rt)
			out, err := cmd.CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if cmd.ProcessState.ExitCode() != 1 || !strings.HasPrefix(last, "demo: control socket directory "+dir+" "+tc.want) ||
				!strings.Contains(last, "remove it") {
				t.Errorf("exit %d (%v), last line %q; want exit 1 and a line saying %q and how to fix it", cmd.ProcessState.ExitCode(), err, last, tc.want)
			}
			if strings.Contains(string(out), "Started server process") {
				t.Errorf("a worker started:\n%s", out)
			}
			// demo status will not read a socket from there either.
			st := exec.Command(demoBin, "status", "--port", "8000")
			st.Env = cmd.Env
			if out, err := st.CombinedOutput(); err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("demo status: %v %q", err, out)
			}
		})
	}
}

// TestStatusStripsControlCharacters: a control socket that sends escape
// sequences (a forged master) cannot drive the terminal of whoever runs
// demo status; --json keeps the raw strings, escaped by JSON.
func TestStatusStripsControlCharacters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "forged.sock")
	srv, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	forged := control.Snapshot{
		MasterPID: 1, Addr: "http://127.0.0.1:8000\x1b]0;pwned\x07", Taken: time.Now(),
		Workers: []control.Worker{{Index: 1, PID: 2, State: "ready\x1b[2J\x1b[H",
			Culprit: "\x1b[31mGET /\x1b[0m\r\n3       666    ready  forged row\u009b2J"}},
	}
	srv.Serve(func() control.Snapshot { return forged })

	out, err := exec.Command(demoBin, "status", "--control", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("demo status printed %q:\n%q", bad, out)
		}
	}
	if n := strings.Count(string(out), "\n"); n != 3 {
		t.Errorf("%d lines, want title, header and one row:\n%s", n, out)
	}

	raw, err := exec.Command(demoBin, "status", "--control", path, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "\x1b") || !strings.Contains(string(raw), `\u001b[2J`) {
		t.Errorf("--json should escape, not strip or print raw:\n%s", raw)
	}
	var back control.Snapshot
	if err := json.Unmarshal(raw, &back); err != nil || back.Workers[0].Culprit != forged.Workers[0].Culprit {
		t.Errorf("--json lost the raw culprit: %v %+v", err, back.Workers)
	}
}
