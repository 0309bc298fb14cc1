package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serveHTTP runs h on 127.0.0.1:0 for the test's duration and returns its URL.
func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	return serveServer(t, &http.Server{Handler: h})
}

// serveServer runs srv on 127.0.0.1:0 for the test's duration and returns
// its URL.
func serveServer(t testing.TB, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

func TestLoadCountsEveryResponseAndNon2xx(t *testing.T) {
	var served atomic.Int64
	url := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every third request fails: the generator must count those apart.
		if served.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	res, err := runLoad(context.Background(), loadConfig{url: url + "/healthcheck", connections: 4, duration: 300 * time.Millisecond, pipeline: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.requests == 0 || res.errors != 0 {
		t.Fatalf("requests %d, errors %d (%s)", res.requests, res.errors, res.firstErr)
	}
	// The server may have answered a few requests the run no longer counted.
	if got := served.Load(); res.requests > got || res.requests < got-4 {
		t.Errorf("counted %d responses, server answered %d", res.requests, got)
	}
	if want := res.requests / 3; res.non2xx < want-2 || res.non2xx > want+2 {
		t.Errorf("non-2xx %d of %d, want about a third", res.non2xx, res.requests)
	}
	if res.lat.n != uint64(res.requests) || res.lat.quantile(0.5) <= 0 {
		t.Errorf("latencies: %d samples, p50 %v", res.lat.n, res.lat.quantile(0.5))
	}
	if res.elapsed < 300*time.Millisecond || res.elapsed > 3*time.Second {
		t.Errorf("ran %v, want about 300ms", res.elapsed)
	}
}

func TestLoadPipelines(t *testing.T) {
	// A raw server that never answers: everything the generator sends
	// before its first response is one batch.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	u, _ := checkTarget("http://" + ln.Addr().String() + "/")
	var batch atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		got := 0
		for got < 8*len(requestBytes(u)) {
			n, err := c.Read(buf[got:])
			if err != nil {
				return
			}
			got += n
		}
		batch.Store(int64(strings.Count(string(buf[:got]), "GET / HTTP/1.1")))
	}()
	_, _ = runLoad(context.Background(), loadConfig{url: u.String(), connections: 1, duration: 200 * time.Millisecond, pipeline: 8})
	wg.Wait()
	if batch.Load() != 8 {
		t.Errorf("%d requests arrived before any response, want the batch of 8", batch.Load())
	}

	// net/http answers pipelined requests one by one, in order; every
	// response must be framed and counted.
	url := serveHTTP(t, BaselineHandler())
	res, err := runLoad(context.Background(), loadConfig{url: url + "/healthcheck", connections: 2, duration: 300 * time.Millisecond, pipeline: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.requests == 0 || res.errors != 0 || res.non2xx != 0 {
		t.Fatalf("pipelined: requests %d, errors %d (%s), non-2xx %d", res.requests, res.errors, res.firstErr, res.non2xx)
	}
}

func TestLoadReconnectsWhenTheServerCloses(t *testing.T) {
	var conns atomic.Int64
	url := serveHTTPWithConnCount(t, &conns)
	res, err := runLoad(context.Background(), loadConfig{url: url + "/", connections: 2, duration: 200 * time.Millisecond, pipeline: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.errors != 0 || res.requests < 2 {
		t.Fatalf("requests %d, errors %d (%s)", res.requests, res.errors, res.firstErr)
	}
	if got := conns.Load(); got < res.requests {
		t.Errorf("%d connections for %d requests: each response said Connection: close", got, res.requests)
	}
}

func serveHTTPWithConnCount(t *testing.T, conns *atomic.Int64) string {
	t.Helper()
	return serveServer(t, &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	})
}

func TestLoadCountsRefusedConnectionsAndStopsOnTime(t *testing.T) {
	// A port nobody listens on: bind one, then close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	res, err := runLoad(context.Background(), loadConfig{url: "http://" + addr + "/", connections: 2, duration: 200 * time.Millisecond, pipeline: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 0 || res.errors == 0 || !strings.Contains(res.firstErr, "connect") {
		t.Errorf("requests %d, errors %d (%q); want only connect errors", res.requests, res.errors, res.firstErr)
	}
	// 10 ms back-off per failure: a bounded number of attempts, no spin.
	if res.errors > 2*200/10+4 {
		t.Errorf("%d connect attempts in 200ms: the generator spins", res.errors)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v for a 200ms run", took)
	}
}

func TestLoadStopsAtMaxRequestsAndOnCancel(t *testing.T) {
	url := serveHTTP(t, BaselineHandler())
	res, err := runLoad(context.Background(), loadConfig{url: url + "/healthcheck", connections: 2, duration: 5 * time.Second, pipeline: 1, maxRequests: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 50 {
		t.Errorf("answered %d requests, want exactly the budget of 50", res.requests)
	}
	if res.elapsed > 2*time.Second {
		t.Errorf("a 50-request budget took %v", res.elapsed)
	}

	// A server that never answers: cancelling ends the run at once.
	hang := make(chan struct{})
	defer close(hang)
	slow := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = runLoad(ctx, loadConfig{url: slow + "/", connections: 2, duration: 10 * time.Second, pipeline: 1, timeout: 10 * time.Second})
	if err == nil {
		t.Error("a cancelled run should say so")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancel took %v to stop the run", took)
	}
}

func TestLoadTargetsOnly127001(t *testing.T) {
	for _, u := range []string{"http://localhost:80/", "http://10.0.0.1:80/", "https://127.0.0.1:443/", "http://127.0.0.1/", "http://[::1]:80/"} {
		if _, err := runLoad(context.Background(), loadConfig{url: u, connections: 1, duration: time.Second, pipeline: 1}); err == nil {
			t.Errorf("runLoad accepted %s", u)
		}
	}
	for _, c := range []loadConfig{
		{connections: 0, duration: time.Second, pipeline: 1},
		{connections: maxLoadConnections + 1, duration: time.Second, pipeline: 1},
		{connections: 1, duration: time.Hour, pipeline: 1},
		{connections: 1, duration: time.Second, pipeline: 0},
	} {
		c.url = "http://127.0.0.1:9/"
		if _, err := c.validate(); err == nil {
			t.Errorf("validate accepted %+v", c)
		}
	}
}

func TestBaselineServesHealthcheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- ServeBaseline(ctx, ln, func(u string) { urls <- u }) }()
	url := <-urls
	for path, want := range map[string]int{"/healthcheck": 200, "/nope": 404} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q, want %d JSON", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		if path == "/healthcheck" && string(body) != `{"status":"ok"}` {
			t.Errorf("body %q", body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeBaseline after cancel: %v", err)
	}
}
