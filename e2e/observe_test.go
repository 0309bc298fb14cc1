package e2e

import (
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"demo/contract"
)

func TestDetectorNamesTheBlockingCallWhileItBlocks(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, time.Second)
	p, url := startServe(t, "--mode", "mixed", "--calls", "1", "--external", ext)
	r := getAsync(url + "/")

	warned, m := p.waitLine(contract.StallingLine("GET /", ""), 0, 5*time.Second)
	id, culprit := m[3], m[4]
	if !strings.Contains(culprit, "worker.(*app).mixed") || !strings.HasSuffix(culprit, "net/http.(*Client).Do") {
		t.Errorf("culprit %q: want the handler down to net/http.(*Client).Do", culprit)
	}
	// The warning is logged while the call is still running: before its response.
	answered, _ := p.waitLine(contract.CallLine(id, 1, "200"), 0, 5*time.Second)
	if warned > answered {
		t.Errorf("the warning came after the blocking call returned")
	}
	_, total := p.waitLine(contract.StallLine("GET /", id), answered, 5*time.Second)
	if d, err := time.ParseDuration(total[1]); err != nil || d < time.Second {
		t.Errorf("final stall %q, want at least the 1s call", total[1])
	}
	if res := <-r; res.status != 200 {
		t.Fatalf("request: %d %v", res.status, res.err)
	}
}

func TestDetectorStaysQuietInAsyncMode(t *testing.T) {
	ext := startExternal(t, 300*time.Millisecond)
	p, url := startServe(t, "--mode", "async", "--external", ext)
	a, b := getAsync(url+"/"), getAsync(url+"/threadpool")
	for _, r := range []result{<-a, <-b} {
		if r.status != 200 {
			t.Fatalf("request: %d %v", r.status, r.err)
		}
	}
	// Both finished, so every line they caused is logged; none is a stall.
	if n := p.countBefore(contract.StallLine("", ""), len(p.lines())); n != 0 {
		t.Errorf("%d stall warnings in async/threadpool mode, want none", n)
	}
}

func TestStatusShowsWorkersAndABlockedLoop(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, time.Second)
	p, base := startServe(t, "--workers", "2", "--mode", "mixed", "--external", ext)
	u, _ := url.Parse(base)
	stuck := getAsync(base + "/")
	p.waitLine(contract.StallingLine("GET /", ""), 0, 5*time.Second)

	// The master calls a loop stalled after a second without beats.
	snap := waitStatus(t, 3*time.Second, stalled, "--port", u.Port())
	if snap.MasterPID != p.pid() {
		t.Errorf("status names master %d, want %d", snap.MasterPID, p.pid())
	}
	var pids []int
	stalled := 0
	for _, w := range snap.Workers {
		pids = append(pids, w.PID)
		want := "ready"
		if w.StalledFor > 0 {
			stalled++
			want = "blocked"
			if !strings.Contains(w.Culprit, "net/http.(*Client).Do") {
				t.Errorf("stalled worker's culprit %q does not name the blocking call", w.Culprit)
			}
		}
		if w.State != want || w.RSS <= 0 {
			t.Errorf("worker row %+v: want %s with an RSS", w, want)
		}
	}
	kids := childPids(t, p.pid())
	slices.Sort(pids)
	slices.Sort(kids)
	if !slices.Equal(pids, kids) {
		t.Errorf("status lists pids %v, the master's children are %v", pids, kids)
	}
	if stalled != 1 {
		t.Errorf("%d workers shown stalled, want exactly the blocked one", stalled)
	}
	table, err := exec.Command(demoBin, "status", "--port", u.Port()).Output()
	if err != nil || !strings.Contains(string(table), "STALLED NOW") {
		t.Errorf("status table: %v\n%s", err, table)
	}
	<-stuck
}

func TestStatusWithoutAMasterSaysSo(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(demoBin, "status", "--control", t.TempDir()+"/none.sock").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no demo master") {
		t.Errorf("status with no master: %v %q", err, out)
	}
}
