package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"demo/internal/testkit"
)

// The two kinds of traffic the tests put a server under: a steady load of
// well-behaved clients, which must not lose a request whatever the server
// goes through meanwhile, and a slow drip (testkit.Drip), a client that
// sends one byte at a time to hold a connection open.

// steadyLoad is clients that send requests back to back until stopped.
type steadyLoad struct {
	t    *testing.T
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	sent, ok atomic.Int64
	mu       sync.Mutex
	failures []error
}

// startLoad starts keepAlive clients that each reuse one connection and
// fresh clients that open a new one per request — so both the idle
// connections of a worker that goes away and the listening socket's
// backlog are exercised — asking for paths in turn. The load ends when the
// test does, if not before; any failed request fails the test.
func startLoad(t *testing.T, url string, keepAlive, fresh int, paths ...string) *steadyLoad {
	t.Helper()
	if len(paths) == 0 {
		paths = []string{"/healthcheck"}
	}
	l := &steadyLoad{t: t, stop: make(chan struct{})}
	for i := range keepAlive + fresh {
		tr := &http.Transport{DisableKeepAlives: i >= keepAlive, MaxIdleConnsPerHost: 1}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for n := i; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.request(c, url+paths[n%len(paths)])
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

func (l *steadyLoad) request(c *http.Client, url string) {
	l.sent.Add(1)
	resp, err := c.Get(url)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
	}
	if err != nil {
		l.mu.Lock()
		l.failures = append(l.failures, fmt.Errorf("GET %s: %w", url, err))
		l.mu.Unlock()
		return
	}
	l.ok.Add(1)
}

// waitServed waits until n more requests have been answered — a sign that
// the traffic flows — and fails the test after timeout.
func (l *steadyLoad) waitServed(n int64, timeout time.Duration) {
	l.t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(timeout)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			l.t.Fatalf("load stalled: %d answered, waited for %d", l.ok.Load(), want)
		}
		time.Sleep(5 * time.Millisecond) // bounded poll of a counter
	}
}

// finish stops the clients, waits for them, and fails the test for every
// request that failed (the first ten of them).
func (l *steadyLoad) finish() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		if n := len(l.failures); n > 0 {
			l.t.Errorf("%d of %d requests failed:\n%v", n, l.sent.Load(), errors.Join(l.failures[:min(n, 10)]...))
		}
	})
}

// slowloris opens a connection, starts a request and then drips its header,
// one byte every interval. It returns what the server sent before closing
// and how long after the first byte the connection was closed.
func slowloris(addr string, interval time.Duration) (string, time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", 0, err
	}
	start := time.Now()
	if _, err := io.WriteString(c, "GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		return "", 0, err
	}
	defer testkit.Drip(c, "a", interval)()
	got, err := io.ReadAll(c)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return string(got), time.Since(start), fmt.Errorf("not closed: %w", err)
	}
	// A reset after the 408 (the server stops lingering) still counts as closed.
	return string(got), time.Since(start), nil
}
