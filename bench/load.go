package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig is one run of the load: like `wrk -c connections -d duration`.
type loadConfig struct {
	url         string        // http://127.0.0.1:PORT/path: the only host the generator targets
	connections int           // keep-alive connections, each driven by one goroutine
	duration    time.Duration // how long to send; responses due later are not waited for
	pipeline    int           // requests written back to back per round trip (1: no pipelining)
	timeout     time.Duration // a response slower than this is a timeout error (wrk: 2s)
	maxRequests int64         // stop after this many requests in all, whatever the duration
}

// Bounds that keep a typo from turning the generator into a flood.
const (
	maxLoadConnections = 20000
	maxLoadDuration    = 10 * time.Minute
	maxPipeline        = 1024
	defaultMaxRequests = 1 << 30
	defaultLoadTimeout = 2 * time.Second
)

// loadResult is what a load run measured, by our generator or by wrk.
type loadResult struct {
	requests int64 // responses received within the duration
	non2xx   int64
	errors   int64         // connect, read, write, framing errors and timeouts
	firstErr string        // one of them, for the report
	elapsed  time.Duration // wall time the load ran
	lat      histogram     // per response, from when its request was written
	loadCPU  time.Duration // CPU time the generator itself used
}

func (r *loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// checkTarget makes sure the generator only ever loads 127.0.0.1.
func checkTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("load target %q: %w", raw, err)
	}
	if u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "" {
		return nil, fmt.Errorf("load target %q: only http://127.0.0.1:PORT is allowed", raw)
	}
	return u, nil
}

func (c *loadConfig) validate() (*url.URL, error) {
	u, err := checkTarget(c.url)
	if err != nil {
		return nil, err
	}
	switch {
	case c.connections < 1 || c.connections > maxLoadConnections:
		return nil, fmt.Errorf("load: connections must be 1 to %d, got %d", maxLoadConnections, c.connections)
	case c.duration <= 0 || c.duration > maxLoadDuration:
		return nil, fmt.Errorf("load: duration must be positive and at most %v, got %v", maxLoadDuration, c.duration)
	case c.pipeline < 1 || c.pipeline > maxPipeline:
		return nil, fmt.Errorf("load: pipeline must be 1 to %d, got %d", maxPipeline, c.pipeline)
	}
	if c.timeout <= 0 {
		c.timeout = defaultLoadTimeout
	}
	if c.maxRequests <= 0 {
		c.maxRequests = defaultMaxRequests
	}
	return u, nil
}

// requestBytes is one GET as a small client sends it.
func requestBytes(u *url.URL) []byte {
	path := u.RequestURI()
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: demo-bench\r\nAccept: */*\r\n\r\n")
}

// runLoad drives cfg.connections keep-alive connections for cfg.duration:
// each writes cfg.pipeline requests at once and reads the responses in order
// with net/http's parser, then starts over. A broken connection is counted
// and replaced. It returns early, with what it measured, when ctx ends.
func runLoad(ctx context.Context, cfg loadConfig) (loadResult, error) {
	u, err := cfg.validate()
	if err != nil {
		return loadResult{}, err
	}
	g := &generator{
		cfg:   cfg,
		addr:  u.Host,
		batch: []byte(strings.Repeat(string(requestBytes(u)), cfg.pipeline)),
		req:   &http.Request{Method: http.MethodGet, URL: u},
	}
	g.budget.Store(cfg.maxRequests)
	cpu0 := selfCPU()
	start := time.Now()
	end := start.Add(cfg.duration)
	hists := make([]histogram, cfg.connections)
	var wg sync.WaitGroup
	for i := range cfg.connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.drive(ctx, end, &hists[i])
		}()
	}
	wg.Wait()
	res := loadResult{
		requests: g.requests.Load(),
		non2xx:   g.non2xx.Load(),
		errors:   g.errors.Load(),
		elapsed:  time.Since(start),
		loadCPU:  selfCPU() - cpu0,
	}
	if p := g.firstErr.Load(); p != nil {
		res.firstErr = *p
	}
	for i := range hists {
		res.lat.merge(&hists[i])
	}
	return res, ctx.Err()
}

type generator struct {
	cfg   loadConfig
	addr  string
	batch []byte        // cfg.pipeline requests, back to back
	req   *http.Request // what ReadResponse frames each response for

	budget   atomic.Int64
	requests atomic.Int64
	non2xx   atomic.Int64
	errors   atomic.Int64
	firstErr atomic.Pointer[string]
}

func (g *generator) fail(err error) {
	g.errors.Add(1)
	msg := err.Error()
	g.firstErr.CompareAndSwap(nil, &msg)
}

// drive runs one connection slot until end: connect, round trips, and a
// fresh connection whenever the server closes or breaks the current one.
func (g *generator) drive(ctx context.Context, end time.Time, h *histogram) {
	var (
		conn net.Conn
		br   *bufio.Reader
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for ctx.Err() == nil && time.Now().Before(end) {
		if conn == nil {
			var err error
			conn, err = g.dial(ctx, end)
			if err != nil {
				if time.Now().Before(end) && ctx.Err() == nil {
					g.fail(fmt.Errorf("connect: %w", err))
					pause(ctx, end, 10*time.Millisecond) // a refusing server must not make us spin
				}
				continue
			}
			if br == nil {
				br = bufio.NewReaderSize(conn, 16<<10)
			} else {
				br.Reset(conn)
			}
		}
		if g.budget.Add(-int64(g.cfg.pipeline)) < 0 {
			return
		}
		if !g.roundTrip(conn, br, end, h) {
			conn.Close()
			conn = nil
		}
	}
}

func (g *generator) dial(ctx context.Context, end time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: minTime(end, time.Now().Add(g.cfg.timeout))}
	conn, err := d.DialContext(ctx, "tcp", g.addr)
	if err != nil {
		return nil, err
	}
	// A Ctrl+C must not wait for a response that may never come.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return &stopConn{Conn: conn, stop: stop}, nil
}

// stopConn unhooks its context watcher on Close.
type stopConn struct {
	net.Conn
	stop func() bool
}

func (c *stopConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// roundTrip writes one batch and reads its responses. It reports whether
// the connection can carry the next batch.
func (g *generator) roundTrip(conn net.Conn, br *bufio.Reader, end time.Time, h *histogram) bool {
	sent := time.Now()
	// Past end nothing more is counted, so nothing more is waited for.
	if err := conn.SetDeadline(minTime(end, sent.Add(g.cfg.timeout))); err != nil {
		g.fail(err)
		return false
	}
	if _, err := conn.Write(g.batch); err != nil {
		if time.Now().Before(end) {
			g.fail(fmt.Errorf("write: %w", err))
		}
		return false
	}
	for range g.cfg.pipeline {
		resp, err := http.ReadResponse(br, g.req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		now := time.Now()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !now.Before(end) {
				return false // the run is over, not the server's fault
			}
			g.fail(fmt.Errorf("read: %w", err))
			return false
		}
		h.record(now.Sub(sent))
		g.requests.Add(1)
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			g.non2xx.Add(1)
		}
		if resp.Close {
			return false // the server closes: open a new connection, like wrk
		}
	}
	return true
}

func pause(ctx context.Context, end time.Time, d time.Duration) {
	t := time.NewTimer(min(d, time.Until(end)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tally counts requests by outcome.
type tally struct {
	ok       int // answered 2xx
	non2xx   int
	errors   int
	firstErr string
}

// add counts one request: its status, or the error that ended it. It
// reports whether it was answered 2xx.
func (t *tally) add(status int, err error) bool {
	switch {
	case err != nil:
		t.errors++
		if t.firstErr == "" {
			t.firstErr = err.Error()
		}
	case status < 200 || status > 299:
		t.non2xx++
	default:
		t.ok++
		return true
	}
	return false
}
