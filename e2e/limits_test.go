package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLimitConcurrencyAnswers503 runs one async worker with
// --limit-concurrency 2: two slow requests are in flight (the loop is free),
// a third is answered 503 at once, and once the slow ones finish the worker
// serves again.
func TestLimitConcurrencyAnswers503(t *testing.T) {
	ext := startExternal(t, time.Second)
	p, url := startServe(t, "--mode", "async", "--calls", "1", "--external", ext, "--limit-concurrency", "2")
	slow := []<-chan result{getAsync(url + "/"), getAsync(url + "/")}
	at, _ := p.waitLine(startedLine, 0, 5*time.Second)
	p.waitLine(startedLine, at+1, 5*time.Second)

	r := get(url + "/")
	if r.err != nil || r.status != http.StatusServiceUnavailable || r.body["detail"] != "Service Unavailable" {
		t.Fatalf("third request: %d %v %v, want 503 Service Unavailable", r.status, r.body, r.err)
	}
	if r.elapsed > 300*time.Millisecond {
		t.Errorf("503 took %v; it should not wait for the slow requests", r.elapsed)
	}
	t.Logf("third request answered 503 in %v", r.elapsed)
	for _, ch := range slow {
		if r := <-ch; r.err != nil || r.status != 200 {
			t.Fatalf("slow request: %d %v", r.status, r.err)
		}
	}
	if r := get(url + "/healthcheck"); r.status != 200 {
		t.Fatalf("after the load dropped: %d %v", r.status, r.err)
	}
	p.waitLine(regexp.MustCompile(`"GET / HTTP/1\.1" 503`), 0, time.Second)
}

// TestSlowlorisIsCutOffByRequestHeaderTimeout: with --timeout-request-header
// 300ms a client dripping one header byte every 100 ms (which keeps
// restarting the keep-alive clock) is answered 408 and closed within about
// a second, and 50 of them at once do not slow /healthcheck down.
func TestSlowlorisIsCutOffByRequestHeaderTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	_, url := startServe(t, "--mode", "async", "--timeout-request-header", timeout.String(), "--no-access-log")
	addr := strings.TrimPrefix(url, "http://")

	got, el, err := slowloris(addr, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") {
		t.Fatalf("slowloris got %q, want a 408", got)
	}
	if el < timeout-50*time.Millisecond || el > time.Second+timeout {
		t.Fatalf("slowloris closed after %v, want about %v", el, timeout)
	}
	t.Logf("one slowloris closed after %v", el)

	const n = 50
	type outcome struct {
		el  time.Duration
		err error
	}
	outcomes := make(chan outcome, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, el, err := slowloris(addr, 100*time.Millisecond)
			if err == nil && !strings.HasPrefix(resp, "HTTP/1.1 408 ") {
				err = fmt.Errorf("got %q, want a 408", resp)
			}
			outcomes <- outcome{el, err}
		}()
	}
	defer wg.Wait()
	var worst time.Duration
	for range 5 {
		h := get(url + "/healthcheck")
		if h.err != nil || h.status != 200 {
			t.Fatalf("healthcheck under slowloris: %d %v", h.status, h.err)
		}
		worst = max(worst, h.elapsed)
	}
	if worst > 200*time.Millisecond {
		t.Errorf("healthcheck took up to %v with %d slowloris connections", worst, n)
	}
	var slowest time.Duration
	for range n {
		o := <-outcomes
		if o.err != nil {
			t.Fatalf("slowloris connection: %v", o.err)
		}
		slowest = max(slowest, o.el)
	}
	if slowest > time.Second+timeout {
		t.Errorf("the last of %d slowloris connections was closed after %v", n, slowest)
	}
	t.Logf("%d slowloris: healthcheck at worst %v, all closed within %v", n, worst, slowest)
	if r := get(url + "/healthcheck"); r.status != 200 {
		t.Fatalf("after the slowloris: %d %v", r.status, r.err)
	}
}

var maxRequestsLine = regexp.MustCompile(`worker-\d+\[(\d+)\] Maximum request limit of (\d+) reached`)

// TestLimitMaxRequestsRecyclesWithoutFailures sends steady traffic, over
// keep-alive and fresh connections, to a worker recycled every ~20
// requests: each worker asks once for a replacement at its limit (N plus
// jitter, shown in its argv), and no request fails across three recyclings.
func TestLimitMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	t.Parallel()
	const limit, jitter = 20, 5
	p, url := startServe(t, "--mode", "async", "--limit-max-requests", strconv.Itoa(limit),
		"--limit-max-requests-jitter", strconv.Itoa(jitter), "--no-access-log")

	// ps shows each worker's own limit.
	pids := childPids(t, p.pid())
	if len(pids) != 1 {
		t.Fatalf("%d workers, want 1", len(pids))
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Split(string(raw), "\x00")
	n := -1
	for i, a := range argv {
		if a == "--limit-max-requests" && i+1 < len(argv) {
			n, _ = strconv.Atoi(argv[i+1])
		}
	}
	if n < limit || n > limit+jitter {
		t.Fatalf("worker argv %q: --limit-max-requests %d, want %d..%d", argv, n, limit, limit+jitter)
	}

	// Steady traffic until three workers have asked to retire. Half the
	// clients reuse connections, half open one per request.
	load := startLoad(t, url, 2, 2)
	at := -1
	for range 3 {
		at, _ = p.waitLine(maxRequestsLine, at+1, 10*time.Second)
	}
	load.finish()

	// Each worker asks once, however far past its limit it serves while its
	// replacement starts.
	retired := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(p.output()))
	for sc.Scan() {
		if m := maxRequestsLine.FindStringSubmatch(sc.Text()); m != nil {
			retired[m[1]]++
		}
	}
	t.Logf("%d requests, %d workers retired", load.sent.Load(), len(retired))
	for pid, n := range retired {
		if n != 1 {
			t.Errorf("worker %s asked to retire %d times", pid, n)
		}
	}
	if r := get(url + "/healthcheck"); r.status != 200 {
		t.Fatalf("after recycling: %d %v", r.status, r.err)
	}
}

// TestSlowBodyIsCutOffByRequestBodyTimeout: with --timeout-request-body 1s,
// a body dripped one byte every 300 ms (each byte restarts the keep-alive
// clock, and the header is long complete) is answered 408 about a second
// after its header, and the connection closes.
func TestSlowBodyIsCutOffByRequestBodyTimeout(t *testing.T) {
	const timeout = time.Second
	_, url := startServe(t, "--mode", "async", "--timeout-request-body", timeout.String(), "--no-access-log")
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "POST /healthcheck HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(c, "a"); err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	el := time.Since(start)
	if err != nil {
		t.Fatalf("after %v: %v", el, err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("a body dripped a byte every 300ms: %d (close %v), want 408 and close", resp.StatusCode, resp.Close)
	}
	if el < timeout-50*time.Millisecond || el > 2*timeout {
		t.Fatalf("408 after %v, want about %v", el, timeout)
	}
	t.Logf("dripped body answered 408 after %v", el)
}

// TestHalfSentBodiesPastTheTotalGet503: with --limit-request-body-total
// 1 MiB, eight connections each hold a 200,000-byte body one byte short of
// complete; at most five fit, the rest are answered 503 at once and closed.
// Once their last byte comes, the bodies that fit are served.
func TestHalfSentBodiesPastTheTotalGet503(t *testing.T) {
	const total, size, conns = 1 << 20, 200_000, 8
	_, url := startServe(t, "--mode", "async", "--limit-request-body-total", strconv.Itoa(total), "--no-access-log")
	addr := strings.TrimPrefix(url, "http://")
	header := fmt.Sprintf("POST /healthcheck HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
	part := strings.Repeat("b", size-1)
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
		// A refused connection may stop reading part-way: a failed write is
		// not the server's fault.
		_, _ = io.WriteString(c, header+part)
	}
	// A refusal is answered at once; an accepted body waits for its last
	// byte. Give the answers a second.
	refused := make([]bool, conns)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // nothing yet: accepted so far
			}
			if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
				t.Errorf("connection %d: %d (close %v) before its body was complete, want 503 and close", i, resp.StatusCode, resp.Close)
			}
			refused[i] = true
		}()
	}
	wg.Wait()
	accepted := 0
	for i, c := range cs {
		if refused[i] {
			continue
		}
		accepted++
		if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "b"); err != nil {
			t.Fatalf("connection %d: last byte: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("connection %d, body complete: %v %v, want the app's 405", i, resp, err)
		}
	}
	t.Logf("%d bodies of %d bytes held at once, %d refused with 503", accepted, size, conns-accepted)
	if accepted*(size-1) > total || accepted == conns {
		t.Fatalf("%d bodies of %d bytes held at once under a total of %d", accepted, size-1, total)
	}
	if r := get(url + "/healthcheck"); r.status != 200 {
		t.Fatalf("after the bodies: %d %v", r.status, r.err)
	}
}
