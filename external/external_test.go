package external

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
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

func TestAClientThatLeavesStopsTheWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	returned := make(chan struct{})
	go func() {
		Handler(Config{Delay: time.Hour}).ServeHTTP(rec, req)
		close(returned)
	}()
	cancel() // the client went away
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("handler still waiting after its client left")
	}
	if rec.Body.Len() != 0 {
		t.Errorf("answered a client that left: %q", rec.Body)
	}
}

func TestOnlyGetRootIsServed(t *testing.T) {
	url := serve(t, 0)
	for path, want := range map[string]int{"/": 200, "/other": 404} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Post(url+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
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
