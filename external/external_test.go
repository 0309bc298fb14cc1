package external

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// serve runs the external API on 127.0.0.1:0 until the test ends.
func serve(t *testing.T, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Config{Delay: delay, Logger: zap.NewNop()}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
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
