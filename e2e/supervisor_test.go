package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
	"demo/contract"
	"demo/internal/testkit"
)

// End-to-end proofs of the supervisor (issue 3): health checks, rolling
// restarts, scaling, recycling, socket sources and shutdown, each with the
// real binary, real signals and real sockets.

var workerTimeoutLine = regexp.MustCompile(`WORKER TIMEOUT \(pid:(\d+)\)`)

// TestTimeoutAbortsABlockedLoop: in mixed mode a request blocks the loop for
// 2 s (2 calls of 1 s). With --timeout 1s the master aborts the worker
// (gunicorn's `WORKER TIMEOUT (pid:N)`), the request fails, and a
// replacement serves. Without --timeout nothing is killed — not even by a
// 1 s --timeout-worker-healthcheck, since pings are answered beside the
// loop: the two health signals are kept apart — and the stall's total is
// logged once: by the worker's detector, or with the detector off by the
// master, naming the worker, its pid and the duration.
func TestTimeoutAbortsABlockedLoop(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, time.Second)

	t.Run("timeout=1s", func(t *testing.T) {
		t.Parallel()
		p, url := startServe(t, "--mode", "mixed", "--external", ext, "--calls", "2", "--timeout", "1s")
		pid := onlyChild(t, p)
		blocked := getAsync(url + "/")
		at, _ := p.waitLine(startedLine, 0, 5*time.Second)
		at, m := p.waitLine(workerTimeoutLine, at, 5*time.Second)
		if m[1] != strconv.Itoa(pid) {
			t.Fatalf("WORKER TIMEOUT for pid %s, want the blocked worker %d", m[1], pid)
		}
		if r := <-blocked; r.err == nil && r.status < 500 {
			t.Errorf("the request on the aborted worker got %d, want an error or a 5xx", r.status)
		}
		p.waitLine(regexp.MustCompile(fmt.Sprintf(`Child process \[%d\] died`, pid)), at, 5*time.Second)
		waitHealthy(t, url, 5*time.Second)
		if now := onlyChild(t, p); now == pid {
			t.Errorf("worker %d still serves after WORKER TIMEOUT", pid)
		}
	})

	for _, tc := range []struct {
		name, slowCallback string
		total              string // the one line that tells the stall's total
	}{
		{"no timeout", "100ms", `worker-1\[%d\] event loop blocked (\d+\.\d+)s by GET /`},
		{"no timeout, no detector", "0", `WARN worker 1/1 \[%d\]: event loop was blocked for (\d+\.\d)s$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, url := startServe(t, "--mode", "mixed", "--external", ext, "--calls", "2", "--timeout-worker-healthcheck", "1s", "--slow-callback", tc.slowCallback)
			pid := onlyChild(t, p)
			r := get(url + "/")
			if r.err != nil || r.status != http.StatusOK {
				t.Fatalf("request: %d %v, want 200", r.status, r.err)
			}
			if r.elapsed < 2*time.Second {
				t.Fatalf("request took %v, want ≥ 2s (two blocking calls of 1s)", r.elapsed)
			}
			stall := regexp.MustCompile(fmt.Sprintf(tc.total, pid))
			_, m := p.waitLine(stall, 0, 2*time.Second)
			if s, _ := strconv.ParseFloat(m[1], 64); s < 1.5 || s > 4 {
				t.Errorf("stall reported as %ss, want about 2s", m[1])
			}
			// Not a readiness wait: a window in which later heartbeats (every
			// 500 ms) must not report the same stall again.
			time.Sleep(time.Second)
			totals := regexp.MustCompile(`event loop (was )?blocked (for )?\d+\.\d+s( by|$)`)
			if n := p.countBefore(totals, len(p.lines())); n != 1 {
				t.Errorf("the stall's total was logged %d times, want once", n)
			}
			out := p.output()
			for _, bad := range []string{"WORKER TIMEOUT", "did not answer", "died"} {
				if strings.Contains(out, bad) {
					t.Errorf("log mentions %q without --timeout", bad)
				}
			}
			if now := onlyChild(t, p); now != pid {
				t.Errorf("worker replaced (%d → %d) without --timeout", pid, now)
			}
		})
	}
}

// TestStoppedWorkerFailsProcessHealthcheck: a SIGSTOPped worker answers no
// ping, so after --timeout-worker-healthcheck it is killed and replaced.
func TestStoppedWorkerFailsProcessHealthcheck(t *testing.T) {
	t.Parallel()
	p, url := startServe(t, "--mode", "async", "--timeout-worker-healthcheck", "1s")
	pid := onlyChild(t, p)
	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	at, _ := p.waitLine(regexp.MustCompile(fmt.Sprintf(`Child process \[%d\] did not answer for 1s, killed`, pid)), 0, 5*time.Second)
	killedAfter := time.Since(stopped)
	p.waitLine(contract.WorkerStartedLine("1/1"), at, 5*time.Second)
	waitHealthy(t, url, 5*time.Second)
	waitGone(t, []int{pid}, time.Second)
	if killedAfter < 900*time.Millisecond {
		t.Errorf("killed %v after SIGSTOP, before the 1s healthcheck timeout", killedAfter)
	}
	t.Logf("stopped worker killed %v after SIGSTOP", killedAfter.Round(time.Millisecond))
}

// TestSighupUnderLoadDropsNothing restarts both workers twice while four
// clients (two keep-alive, two with a fresh connection per request) hit /
// and /healthcheck: not one request may fail, and every pid changes. The
// second case is the hard one for SO_REUSEPORT: a mixed worker's handler
// blocks its loop while it drains, and whatever the kernel queued on its own
// socket meanwhile would be reset when that socket closes.
func TestSighupUnderLoadDropsNothing(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 10*time.Millisecond)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"async shared socket", []string{"--mode", "async"}},
		// Not --reuse-port: retiring a worker there resets connections still
		// in its own queue unless net.ipv4.tcp_migrate_req=1 (see README).
		{"mixed shared socket", []string{"--mode", "mixed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sighupUnderLoad(t, append([]string{"--workers", "2", "--external", ext, "--no-access-log"}, tc.args...))
		})
	}
}

func sighupUnderLoad(t *testing.T, args []string) {
	p, url := startServe(t, args...)
	master := p.pid()
	before := waitChildren(t, master, time.Second, func(k []int) bool { return len(k) == 2 })

	load := startLoad(t, url, 2, 2, "/healthcheck", "/")
	start := time.Now()
	restartDone := regexp.MustCompile(`Rolling restart done: 2 worker processes replaced`)
	at := 0
	for range 2 {
		load.waitServed(50, 5*time.Second) // the load is flowing
		p.signal(syscall.SIGHUP)
		at, _ = p.waitLine(restartDone, at, 10*time.Second)
		at++
	}
	load.waitServed(50, 5*time.Second)
	// At least ~2 s of load in all: the old workers finish draining meanwhile.
	for time.Since(start) < 2*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	load.finish()

	after := waitChildren(t, master, 5*time.Second, func(k []int) bool { return len(k) == 2 })
	for _, pid := range after {
		if slices.Contains(before, pid) {
			t.Errorf("worker %d survived two SIGHUPs (before %v, after %v)", pid, before, after)
		}
	}
	if n := p.countBefore(regexp.MustCompile(`Received SIGHUP`), at); n != 2 {
		t.Errorf("%d `Received SIGHUP` lines, want 2", n)
	}
	t.Logf("%d requests over %v with two SIGHUPs, %d answered", load.sent.Load(),
		time.Since(start).Round(time.Millisecond), load.ok.Load())
}

// TestSigttinSigttouScale adds and removes a worker, and never goes below one.
func TestSigttinSigttouScale(t *testing.T) {
	t.Parallel()
	p, url := startServe(t, "--mode", "async")
	master := p.pid()
	first := onlyChild(t, p)

	p.signal(syscall.SIGTTIN)
	at, _ := p.waitLine(regexp.MustCompile(`Received SIGTTIN, increasing the number of processes`), 0, 5*time.Second)
	at, m := p.waitLine(contract.WorkerStartedLine("2/2"), at, 5*time.Second)
	second, _ := strconv.Atoi(m[1])
	kids := waitChildren(t, master, 5*time.Second, func(k []int) bool { return len(k) == 2 })
	if !slices.Contains(kids, first) || !slices.Contains(kids, second) {
		t.Fatalf("children %v, want %d and %d", kids, first, second)
	}
	if argv := workerArgv(t, second); len(argv) < 3 || argv[1] != "worker" || argv[2] != "2/2" {
		t.Errorf("new worker's argv %q, want `demo worker 2/2 ...`", argv)
	}
	at, _ = p.waitLine(contract.WorkerReadyLine(2, 2), at, 5*time.Second)

	p.signal(syscall.SIGTTOU)
	at, _ = p.waitLine(regexp.MustCompile(fmt.Sprintf(`Stopping child process \[%d\] \(worker 2/2\)`, second)), at, 5*time.Second)
	waitGone(t, []int{second}, 5*time.Second)
	waitChildren(t, master, 5*time.Second, func(k []int) bool { return len(k) == 1 && k[0] == first })

	p.signal(syscall.SIGTTOU)
	p.waitLine(regexp.MustCompile(`Already at one worker process; not decreasing further`), at, 5*time.Second)
	if kids := childPids(t, master); len(kids) != 1 || kids[0] != first {
		t.Errorf("children after a SIGTTOU at one worker: %v, want [%d]", kids, first)
	}
	if r := get(url + "/healthcheck"); r.status != http.StatusOK {
		t.Errorf("healthcheck after scaling: %d %v", r.status, r.err)
	}
}

// TestLimitMaxRequestsJitterIsWhatTheWorkerEnforces: the limit a worker shows
// in ps (N plus its own jitter) is the one it retires at — on exactly that
// request, not one before — and its replacement draws its own in [N, N+J].
func TestLimitMaxRequestsJitterIsWhatTheWorkerEnforces(t *testing.T) {
	t.Parallel()
	const limit, jitter = 3, 4
	p, url := startServe(t, "--mode", "async", "--limit-max-requests", strconv.Itoa(limit),
		"--limit-max-requests-jitter", strconv.Itoa(jitter))
	master := p.pid()
	limitOf := func(pid int) int {
		argv := workerArgv(t, pid)
		i := slices.Index(argv, "--limit-max-requests")
		if i < 0 || i+1 >= len(argv) {
			t.Fatalf("worker %d argv %q has no --limit-max-requests", pid, argv)
		}
		n, _ := strconv.Atoi(argv[i+1])
		if n < limit || n > limit+jitter {
			t.Fatalf("worker %d argv shows --limit-max-requests %d, want %d..%d", pid, n, limit, limit+jitter)
		}
		return n
	}
	first := onlyChild(t, p)
	shown := limitOf(first)
	// Sequential requests, each answered before the next. The worker logs
	// the limit while counting a request, before that request's access
	// line: so it must sit between the access lines of requests shown-1
	// and shown.
	access := regexp.MustCompile(`"GET /healthcheck HTTP/1\.1" 200`)
	lines := make([]int, 0, shown)
	at := 0
	for i := 1; i <= shown; i++ {
		if r := get(url + "/healthcheck"); r.status != http.StatusOK {
			t.Fatalf("request %d: %d %v", i, r.status, r.err)
		}
		at, _ = p.waitLine(access, at, 5*time.Second)
		lines = append(lines, at)
		at++
	}
	retired, m := p.waitLine(maxRequestsLine, 0, 5*time.Second)
	if m[1] != strconv.Itoa(first) || m[2] != strconv.Itoa(shown) {
		t.Errorf("retire line for worker %s at limit %s, want worker %d at %d", m[1], m[2], first, shown)
	}
	if retired > lines[shown-1] || (shown > 1 && retired < lines[shown-2]) {
		t.Errorf("worker retired at line %d, want between the access lines of requests %d and %d (%v)", retired, shown-1, shown, lines)
	}
	next := waitChildren(t, master, 5*time.Second, func(k []int) bool { return len(k) == 1 && k[0] != first })
	t.Logf("worker %d limit %d; replacement %d limit %d", first, shown, next[0], limitOf(next[0]))
	waitHealthy(t, url, 5*time.Second)
}

func getVia(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// TestUnixSocket serves over --uds with mode 0660, replaces the stale file a
// SIGKILLed master left behind, and removes the file at a clean exit.
func TestUnixSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "demo.sock")
	c := testkit.UnixClient(path)

	crashed := startDemo(t, "serve", "--mode", "async", "--uds", path)
	crashed.waitLine(serveRunning, 0, 10*time.Second)
	if code, err := getVia(c, "http://demo/healthcheck"); err != nil || code != 200 {
		t.Fatalf("over the unix socket: %d %v", code, err)
	}
	kids := childPids(t, crashed.pid())
	crashed.signal(syscall.SIGKILL)
	crashed.wait(5 * time.Second)
	waitGone(t, kids, time.Second)
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("a SIGKILLed master should leave its socket file: %v %v", fi, err)
	}

	p := startDemo(t, "serve", "--mode", "async", "--uds", path)
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	if m[1] != "unix:"+path {
		t.Errorf("running on %s, want unix:%s", m[1], path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file mode %v, want a socket with 0660", fi.Mode())
	}
	for range 3 {
		if code, err := getVia(c, "http://demo/healthcheck"); err != nil || code != 200 {
			t.Fatalf("over the replaced unix socket: %d %v", code, err)
		}
	}
	p.waitLine(regexp.MustCompile(`unix - "GET /healthcheck HTTP/1\.1" 200`), 0, time.Second)

	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file still there after a clean exit: %v", err)
	}
}

// listenerFile is a listening socket on 127.0.0.1:0 to pass a child, and
// its port.
func listenerFile(t *testing.T) (*os.File, int) {
	f, addr := testkit.ListenerFile(t)
	return f, addr.Port
}

// TestInheritedFD: --fd 3 serves on a socket the test bound and passed.
func TestInheritedFD(t *testing.T) {
	t.Parallel()
	f, port := listenerFile(t)
	p := startSpec(t, childproc.Spec{Args: []string{"serve", "--fd", "3", "--mode", "async"}, ExtraFiles: []*os.File{f}})
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	if want := fmt.Sprintf("http://127.0.0.1:%d", port); m[1] != want {
		t.Errorf("running on %s, want %s", m[1], want)
	}
	for range 3 {
		if r := get(fmt.Sprintf("http://127.0.0.1:%d/healthcheck", port)); r.err != nil || r.status != 200 {
			t.Fatalf("on the inherited socket: %d %v", r.status, r.err)
		}
	}
}

// TestSystemdSocketActivation passes a socket the way systemd does: fd 3,
// LISTEN_FDS=1, LISTEN_PID of the process itself (a shell that sets it to
// its own pid and then execs demo keeps the pid), LISTEN_FDNAMES. A
// LISTEN_PID naming another process means the sockets are not ours.
func TestSystemdSocketActivation(t *testing.T) {
	t.Parallel()
	t.Run("ours", func(t *testing.T) {
		f, port := listenerFile(t)
		p := startSpec(t, childproc.Spec{Path: "sh", Args: []string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" serve "$@"`,
			demoBin, "--mode", "async"}, ExtraFiles: []*os.File{f}})
		at, _ := p.waitLine(regexp.MustCompile(`Using the socket systemd passed \(web\)`), 0, 10*time.Second)
		_, m := p.waitLine(serveRunning, at, 10*time.Second)
		if want := fmt.Sprintf("http://127.0.0.1:%d", port); m[1] != want {
			t.Errorf("running on %s, want %s", m[1], want)
		}
		if r := get(fmt.Sprintf("http://127.0.0.1:%d/healthcheck", port)); r.err != nil || r.status != 200 {
			t.Fatalf("on the activated socket: %d %v", r.status, r.err)
		}
		// The variables were for the master alone.
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", onlyChild(t, p)))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(env), "LISTEN_") {
			t.Errorf("a worker inherited LISTEN_* variables")
		}
	})
	t.Run("another pid", func(t *testing.T) {
		f, port := listenerFile(t)
		p := startSpec(t, childproc.Spec{Args: []string{"serve", "--port", "0", "--mode", "async"}, Env: []string{"LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=web"}, ExtraFiles: []*os.File{f}})
		_, m := p.waitLine(serveRunning, 0, 10*time.Second)
		if m[1] == fmt.Sprintf("http://127.0.0.1:%d", port) || strings.Contains(p.output(), "systemd passed") {
			t.Errorf("used a socket meant for pid 1 (running on %s)", m[1])
		}
	})
}

// TestReusePortRoutesToBlockedWorker shows the difference between a shared
// socket and --reuse-port. Two mixed workers; one is blocked for 2 s by a
// request; then 10 health checks on fresh connections, at once, each allowed
// 400 ms. With the shared socket only the idle worker accepts, so all
// answer fast; with --epoll-exclusive too, since only a worker waiting in
// epoll_wait can be the one woken. With SO_REUSEPORT the kernel hashes each connection to one of
// the two sockets, so about half land in the blocked worker's queue and
// wait. That all 10 miss it has probability 2^-10, an accepted flake rate.
func TestReusePortRoutesToBlockedWorker(t *testing.T) {
	ext := startExternal(t, time.Second)
	const probes, allowed = 10, 400 * time.Millisecond
	for _, tc := range []struct {
		name  string
		extra []string
	}{{"shared socket", nil}, {"epoll-exclusive", []string{"--epoll-exclusive"}}, {"reuse-port", []string{"--reuse-port"}}} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--workers", "2", "--mode", "mixed", "--external", ext, "--calls", "2", "--no-access-log"}, tc.extra...)
			p, url := startServe(t, args...)
			blocked := getAsync(url + "/")
			p.waitLine(startedLine, 0, 5*time.Second)

			slow := make(chan time.Duration, probes)
			var wg sync.WaitGroup
			for range probes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &http.Client{Timeout: allowed, Transport: &http.Transport{DisableKeepAlives: true}}
					start := time.Now()
					code, err := getVia(c, url+"/healthcheck")
					if el := time.Since(start); err != nil || code != 200 || el >= allowed {
						slow <- el
					}
				}()
			}
			wg.Wait()
			close(slow)
			late := len(slow)
			t.Logf("%s: %d of %d health checks waited ≥ %v or failed", tc.name, late, probes, allowed)
			reusePort := tc.name == "reuse-port"
			if !reusePort && late != 0 {
				t.Errorf("%s: %d health checks were late; the idle worker should take them all", tc.name, late)
			}
			if reusePort && late == 0 {
				t.Errorf("reuse-port: no health check reached the blocked worker")
			}
			// Done with the blocked worker: ending the master ends the request.
			p.signal(syscall.SIGKILL)
			<-blocked
		})
	}
}

// TestSigkillMasterLeavesNoWorkerInAnyMode complements
// TestSigkillMasterTakesBlockedWorkersWithIt (mixed): in async and threadpool
// mode the loop is free but requests are in flight.
func TestSigkillMasterLeavesNoWorkerInAnyMode(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, 30*time.Second)
	for _, mode := range []string{"async", "threadpool"} {
		t.Run(mode, func(t *testing.T) {
			p, url := startServe(t, "--workers", "2", "--mode", mode, "--external", ext)
			kids := childPids(t, p.pid())
			inflight := []<-chan result{getAsync(url + "/"), getAsync(url + "/")}
			at, _ := p.waitLine(startedLine, 0, 5*time.Second)
			p.waitLine(startedLine, at+1, 5*time.Second)
			p.signal(syscall.SIGKILL)
			p.wait(5 * time.Second)
			waitGone(t, kids, time.Second)
			for _, ch := range inflight {
				if r := <-ch; r.err == nil {
					t.Errorf("a request to a worker of a killed master got %d", r.status)
				}
			}
		})
	}
}

// TestShutdownSignals checks the README's exit codes: one SIGINT with
// nothing in flight exits 0; a SIGTERM whose drain outlasts
// --timeout-graceful-shutdown kills the straggler and still exits 0, and so
// does a SIGTERM repeated meanwhile, which changes nothing; SIGINT twice, or
// SIGINT after SIGTERM, with requests in flight forces an exit 1 at once;
// SIGQUIT exits 1 at once even with a blocked loop. Workers are gone in
// every case.
func TestShutdownSignals(t *testing.T) {
	ext := startExternal(t, 30*time.Second)
	for _, tc := range []struct {
		name string
		args []string
		sigs []syscall.Signal
		busy bool
		code int
		// The exit must come within [atLeast, quick] after the last signal.
		atLeast, quick time.Duration
	}{
		{"SIGINT idle", []string{"--mode", "async"}, []syscall.Signal{syscall.SIGINT}, false, 0, 0, 5 * time.Second},
		{"SIGTERM past the graceful timeout", []string{"--mode", "async", "--timeout-graceful-shutdown", "300ms"},
			[]syscall.Signal{syscall.SIGTERM}, true, 0, 250 * time.Millisecond, 3 * time.Second},
		{"SIGTERM twice", []string{"--mode", "async", "--timeout-graceful-shutdown", "1s"},
			[]syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}, true, 0, 800 * time.Millisecond, 3 * time.Second},
		{"SIGINT twice", []string{"--mode", "async"}, []syscall.Signal{syscall.SIGINT, syscall.SIGINT}, true, 1, 0, 2 * time.Second},
		{"SIGTERM then SIGINT", []string{"--mode", "async"}, []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}, true, 1, 0, 2 * time.Second},
		{"SIGQUIT", []string{"--mode", "mixed"}, []syscall.Signal{syscall.SIGQUIT}, true, 1, 0, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, url := startServe(t, append([]string{"--external", ext}, tc.args...)...)
			kids := childPids(t, p.pid())
			var inflight <-chan result
			if tc.busy {
				inflight = getAsync(url + "/")
				p.waitLine(startedLine, 0, 5*time.Second)
			}
			at := 0
			var last time.Time
			for i, sig := range tc.sigs {
				if i > 0 {
					// The first one was handled: the shutdown is under way.
					at, _ = p.waitLine(regexp.MustCompile(`Shutting down`), at, 5*time.Second)
				}
				last = time.Now()
				p.signal(sig)
			}
			code := p.wait(10 * time.Second)
			took := time.Since(last)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if took > tc.quick || took < tc.atLeast {
				t.Errorf("exited %v after the last signal, want within [%v, %v]", took, tc.atLeast, tc.quick)
			}
			waitGone(t, kids, time.Second)
			if inflight != nil {
				if r := <-inflight; r.err == nil {
					t.Errorf("in-flight request got %d from a forced shutdown", r.status)
				}
			}
			t.Logf("exit %d, %v after the last signal", code, took.Round(time.Millisecond))
		})
	}
}

// TestRepeatedSIGTERMFinishesInFlight: timeout(1) or a supervisor may send
// SIGTERM again; a request in flight on a blocked loop still gets its
// answer, and the master exits 0 (Uvicorn forces only on a second Ctrl+C).
func TestRepeatedSIGTERMFinishesInFlight(t *testing.T) {
	t.Parallel()
	ext := startExternal(t, time.Second)
	p, url := startServe(t, "--mode", "mixed", "--external", ext, "--calls", "1")
	inflight := getAsync(url + "/")
	at, _ := p.waitLine(startedLine, 0, 5*time.Second)
	p.signal(syscall.SIGTERM)
	at, _ = p.waitLine(regexp.MustCompile(`Shutting down`), at, 5*time.Second)
	p.signal(syscall.SIGTERM)
	p.waitLine(regexp.MustCompile(`Received SIGTERM again: still draining \(1 child process, up to \d+\.\ds left\); SIGINT or SIGQUIT stops them at once`), at, 5*time.Second)
	if r := <-inflight; r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request after two SIGTERMs: %d %v, want 200", r.status, r.err)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
}

// TestCrashLoopBacksOff kills each new worker as soon as it starts: after
// five deaths within a second of starting, the master says it backs off
// (100 ms, then 200 ms) instead of respawning at once, and once a worker
// is left alone it serves.
func TestCrashLoopBacksOff(t *testing.T) {
	t.Parallel()
	p, url := startServe(t, "--mode", "async")
	started := contract.WorkerStartedLine("1/1")
	at, m := p.waitLine(started, 0, 5*time.Second)
	for i := 1; i <= 6; i++ {
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		at, _ = p.waitLine(regexp.MustCompile(fmt.Sprintf(`Child process \[%d\] died`, pid)), at, 5*time.Second)
		switch i {
		case 5, 6:
			want := fmt.Sprintf(`Worker 1/1 died within 1s of starting %d times in a row; restarting it in %s`,
				i, map[int]string{5: "100ms", 6: "200ms"}[i])
			at, _ = p.waitLine(regexp.MustCompile(regexp.QuoteMeta(want)), at, 5*time.Second)
		}
		at, m = p.waitLine(started, at, 5*time.Second)
	}
	waitHealthy(t, url, 5*time.Second)
}
