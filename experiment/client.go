package experiment

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// The experiment's HTTP client sends every request — burst, open-loop
// arrival or health probe — on a connection of its own, dialled for it and
// closed after it, as the article's clients do (httpie, one requests.Session
// per call) and as a load balancer's health checker does. That is the point
// of the measurement: a new connection waits in the server's accept queue
// until a worker whose loop is free accepts it, so a blocked worker shows;
// a kept-alive connection would pin its requests to one worker.
//
// It is a small client of our own on top of net.Dialer and net/http's
// response parser, not an http.Transport: a Transport with keep-alives off
// still runs a read and a write goroutine per connection beside the
// caller's, plus a dial goroutine, and pools state we never reuse. Here one
// goroutine and one file descriptor carry a request from dial to close,
// which is what lets one process hold thousands of open-loop requests in
// flight on two shared cores (docs/performance.md has the figures). It also
// tells exactly where a request failed (connect, write, read), which is how
// failures are counted by cause.

// Failure causes, as tables and --json name them.
const (
	CauseRefused        = "connect refused"
	CauseConnectTimeout = "connect timeout"
	CauseConnect        = "connect error"
	CauseTimeout        = "timeout"
	CauseReset          = "reset"
	CauseClosed         = "closed without answer"
	CauseBadResponse    = "bad response"
	CauseNotSent        = "not sent"
	CauseInterrupted    = "interrupted"
)

// endpoint is where requests go: the address to dial (resolved once) and
// what the request line and Host header say.
type endpoint struct {
	addr   string // ip:port to dial
	host   string // the Host header: as the user wrote it
	prefix string // path prefix of the base URL, without a trailing slash
}

// response is what one request got.
type response struct {
	status    int
	requestID string    // the X-Request-ID header, if any
	done      time.Time // when the whole response had arrived, or the request failed
	err       error     // nil when a whole response arrived
	cause     string    // why it failed, one of the Cause constants; "" if it did not
}

// readBufs recycles the per-request read buffers: at 1,000 requests a
// second, allocating 4 KiB each would be most of the client's garbage.
var readBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// get sends GET path on a fresh connection and reads the whole response,
// giving up at deadline. It never returns early for anything but ctx: a
// cancelled ctx closes the connection under the read.
func (e endpoint) get(ctx context.Context, path string, deadline time.Time) (r response) {
	defer func() {
		if r.done.IsZero() {
			r.done = time.Now()
		}
	}()
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return response{err: err, cause: classify(ctx, err, true)}
	}
	defer conn.Close()
	// Ctrl+C must not wait for a server that holds the request: closing the
	// deadline wakes the read at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = conn.SetDeadline(deadline)

	req := "GET " + e.prefix + path + " HTTP/1.1\r\nHost: " + e.host +
		"\r\nUser-Agent: demo-experiment\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		r.err, r.cause = fmt.Errorf("write request: %w", err), classify(ctx, err, false)
		return r
	}
	br := readBufs.Get().(*bufio.Reader)
	br.Reset(conn)
	defer func() {
		br.Reset(nil)
		readBufs.Put(br)
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		r.err, r.cause = fmt.Errorf("read response: %w", err), classify(ctx, err, false)
		return r
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		r.err, r.cause = fmt.Errorf("read response body: %w", err), classify(ctx, err, false)
		return r
	}
	r.done = time.Now()
	r.status, r.requestID = resp.StatusCode, resp.Header.Get("X-Request-ID")
	if r.status != http.StatusOK {
		r.cause = fmt.Sprintf("HTTP %d", r.status)
	}
	// We asked for Connection: close, so the server closes first and the
	// TIME_WAIT state stays on its side, not on our ephemeral ports. Wait
	// briefly for its FIN; the response is complete either way.
	_ = conn.SetReadDeadline(minTime(deadline, time.Now().Add(time.Second)))
	_, _ = br.Discard(1)
	return r
}

// classify names why a request failed.
func classify(ctx context.Context, err error, dialing bool) string {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return CauseInterrupted
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseRefused
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		if dialing {
			return CauseConnectTimeout
		}
		return CauseTimeout
	case dialing:
		return CauseConnect
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return CauseReset
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return CauseClosed
	}
	return CauseBadResponse
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
