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

func TestPathIsDerivedFromThePort(t *testing.T) {
	if a, b := Path(8000, ""), Path(8001, ""); a == b || !strings.HasSuffix(a, "control-8000.sock") {
		t.Errorf("paths %q and %q", a, b)
	}
	if p := Path(0, "/run/app.sock"); p != "/run/app.sock.control" {
		t.Errorf("uds control path %q", p)
	}
}
