package external

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// serve runs the external API on 127.0.0.1:0, as `demo external` does, until
// the test ends.
func serve(t *testing.T, delay time.Duration) string {
	t.Helper()
	lns, err := Listen("127.0.0.1", 0, DefaultListeners, DefaultBacklog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lns, Config{Delay: delay, Logger: zap.NewNop()}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + lns[0].Addr().String()
}

func TestThousandsWaitAtOnce(t *testing.T) {
	const n = 2000
	delay := 500 * time.Millisecond
	url := serve(t, delay)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(url + "/")
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != `{"message":"Hello World"}` {
				errs <- errors.New("bad answer: " + resp.Status + " " + string(body))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// They waited side by side, not one after the other.
	if el := time.Since(start); el < delay || el > 6*delay {
		t.Errorf("%d requests of %v each took %v together", n, delay, el)
	}
}

// TestAClientThatLeavesStopsTheWait: a client that hangs up while its
// request waits no longer holds its connection for the delay. The loop has
// no callback for a hang-up, so it polls every goneCheckInterval and answers
// such requests at once with 499, closing the connection. The client here
// only half-closes (shutdown SHUT_WR), which the server cannot tell from a
// full close, so that it can watch what the server does.
func TestAClientThatLeavesStopsTheWait(t *testing.T) {
	url := serve(t, time.Hour)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	answer, err := io.ReadAll(c) // until the server closes
	if err != nil {
		t.Fatalf("server still waiting %v after its client left: %v", time.Since(start), err)
	}
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 499 ")) || bytes.Contains(answer, helloWorld) {
		t.Errorf("answer to a client that left: %q, want a bare 499", answer)
	}
}

// TestShutdownDropsWaitingRequests: cancelling Serve's context logs
// "Shutting down", closes the connections of requests still waiting (no
// answer) and returns nil at once, not after the delay.
func TestShutdownDropsWaitingRequests(t *testing.T) {
	lns, err := Listen("127.0.0.1", 0, 3, 16)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lns, Config{Delay: time.Hour, Logger: zap.New(core), Loops: 2}) }()
	addr := lns[0].Addr().String()
	// A request that has been answered proves the loops are running; the
	// waiting ones may or may not have been read when the context goes:
	// either way their connections must close without an answer.
	if resp, err := http.Get("http://" + addr + "/other"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	var conns []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5s after its context was cancelled")
	}
	for _, c := range conns {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		answer, err := io.ReadAll(c)
		var nerr net.Error
		if len(answer) > 0 || (errors.As(err, &nerr) && nerr.Timeout()) {
			t.Fatalf("waiting request after shutdown: %q, %v; want its connection closed", answer, err)
		}
	}
	for _, want := range []string{"demo external running on http://" + addr + " (delay 1h0m0s, Press CTRL+C to quit)", "Shutting down"} {
		if logs.FilterMessage(want).Len() != 1 {
			t.Errorf("no log line %q in %v", want, logs.All())
		}
	}
}

// TestOnlyGetRootIsServed checks the answers net/http's ServeMux gave with
// a single "GET /{$}" route, and that the server closes every connection
// after its one answer, although the client asked to keep it alive.
func TestOnlyGetRootIsServed(t *testing.T) {
	url := serve(t, 50*time.Millisecond)
	addr := strings.TrimPrefix(url, "http://")
	for _, tc := range []struct {
		method, path string
		status       int
		body, allow  string
	}{
		{"GET", "/", 200, `{"message":"Hello World"}`, ""},
		{"GET", "/?q=1", 200, `{"message":"Hello World"}`, ""},
		{"HEAD", "/", 200, "", ""},
		{"GET", "/other", 404, "404 page not found\n", ""},
		{"POST", "/other", 404, "404 page not found\n", ""},
		{"POST", "/", 405, "Method Not Allowed\n", "GET, HEAD"},
		{"DELETE", "/", 405, "Method Not Allowed\n", "GET, HEAD"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", tc.method, tc.path); err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(c) // ends only if the server closes
		c.Close()
		if err != nil {
			t.Fatalf("%s %s: connection still open after the answer: %v", tc.method, tc.path, err)
		}
		req := &http.Request{Method: tc.method}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
		if err != nil {
			t.Fatalf("%s %s: %v in %q", tc.method, tc.path, err, raw)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || string(body) != tc.body || resp.Header.Get("Allow") != tc.allow || !resp.Close {
			t.Errorf("%s %s: %d %q Allow %q close %v, want %d %q Allow %q close true",
				tc.method, tc.path, resp.StatusCode, body, resp.Header.Get("Allow"), resp.Close, tc.status, tc.body, tc.allow)
		}
		if tc.status == 200 && resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
	}
}

func TestListenSharesOnePortAndRefusesABusyOne(t *testing.T) {
	lns, err := Listen("127.0.0.1", 0, 3, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	if len(lns) != 3 {
		t.Fatalf("%d listeners, want 3", len(lns))
	}
	addr := lns[0].Addr().String()
	for _, ln := range lns[1:] {
		if ln.Addr().String() != addr {
			t.Errorf("listeners on %s and %s, want one port", addr, ln.Addr())
		}
	}
	// Another demo external on the same port must fail, although it would
	// set SO_REUSEPORT too.
	port := lns[0].Addr().(*net.TCPAddr).Port
	if again, err := Listen("127.0.0.1", port, 2, 16); err == nil {
		for _, ln := range again {
			ln.Close()
		}
		t.Fatalf("second Listen on busy port %d succeeded", port)
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen: %v, want address already in use", err)
	}
}

// TestBurstBeyondOneAcceptQueue fires more connections at once than one
// socket's accept queue holds (backlog 100 here): with several listeners
// each connection lands in some queue, none waits for a SYN retransmit,
// and all are answered about one delay after the burst.
func TestBurstBeyondOneAcceptQueue(t *testing.T) {
	const n, backlog = 400, 100
	delay := 300 * time.Millisecond
	lns, err := Listen("127.0.0.1", 0, 8, backlog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lns, Config{Delay: delay, Logger: zap.NewNop()}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := lns[0].Addr().String()
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(req); err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(c)
			if err != nil || !bytes.HasSuffix(body, helloWorld) {
				errs <- fmt.Errorf("answer %q, %v", body, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A dropped SYN is retried after one second: all done well before.
	if el := time.Since(start); el > delay+900*time.Millisecond {
		t.Errorf("%d connections of %v each took %v together: some waited for a SYN retransmit", n, delay, el)
	}
}
