// Package client is a non-blocking HTTP/1.1 client that runs entirely on an
// eventloop.Loop, the Go twin of awaiting httpx.AsyncClient inside asyncio:
// connect, request write, response read and parse all happen in loop
// callbacks, so the loop keeps serving other work while a call waits. Only
// host name resolution leaves the loop, on a goroutine the loop owns.
//
// Every call opens its own connection and sends "Connection: close", like
// creating a new AsyncClient per request; there is no connection pool.
package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"demo/eventloop"
)

const (
	defaultMaxResponseBytes = 1 << 20
	defaultUserAgent        = "demo"

	// scratchSize is the shared read buffer: one per client, not per call,
	// so a call that is only waiting holds no buffer at all.
	scratchSize = 64 << 10
	// Buffers of finished calls are kept for reuse, up to this many and this
	// capacity, so a burst of calls does not churn the allocator.
	maxFreeBufs   = 64
	maxFreeBufCap = 64 << 10
)

// Config tunes a Client. The zero value is usable.
type Config struct {
	// MaxResponseBytes caps a response, headers and body together; a larger
	// one is an error. Default 1 MiB.
	MaxResponseBytes int64
	// UserAgent is sent as the User-Agent header. Default "demo".
	UserAgent string
}

// Response is a complete response of any status.
type Response struct {
	Proto      string // "HTTP/1.1"
	StatusCode int    // 200
	Status     string // "200 OK", as http.Response.Status
	Header     http.Header
	Body       []byte
}

// ErrTimeout is wrapped by the error of a call whose timeout expired:
// errors.Is(err, ErrTimeout) holds, and so does errors.Is(err,
// context.DeadlineExceeded). Like net errors it has a Timeout method, and so
// has every error a call reports.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string        { return "timeout" }
func (timeoutError) Timeout() bool        { return true }
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// callError is what a callback receives: "GET <url>: <cause>", wrapping the
// cause so errors.Is sees errnos, io.ErrUnexpectedEOF, ErrTimeout, ...
type callError struct {
	url string
	err error
}

func (e *callError) Error() string { return "GET " + e.url + ": " + e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

// Timeout reports whether the call failed for lack of time: its own timeout
// or a cause that says so (ETIMEDOUT from connect).
func (e *callError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

// Client issues GET calls on one loop. Its methods belong to the loop
// goroutine.
type Client struct {
	l   *eventloop.Loop
	max int64
	ua  string

	// Buffers shared by all calls; safe because only the loop goroutine
	// touches them and no call keeps a reference across callbacks.
	scratch []byte // read buffer
	reqBuf  []byte // request being written
	parser  parser
	sa4     unix.SockaddrInet4 // address being connected to
	free    [][]byte           // response buffers of finished calls, for reuse
	last    *target            // the URL parsed last

	dns map[string]*dnsEntry
}

// Test hooks, as in net/http: the tests set them to count what happens
// inside calls, which no result shows. Outside tests they do nothing.
var (
	testHookSocket     = func(delta int) {} // a call opened (+1) or closed (-1) its socket
	testHookLookup     = func() {}          // a host name lookup started
	testHookParse      = func() {}          // a response parse ran
	testHookEarlyWrite = func() {}          // a request went out whole right after connect(2)
	testHookShortWrite = func() {}          // a write left part of a request for EPOLLOUT
)

// New returns a client whose calls run on l.
func New(l *eventloop.Loop, cfg Config) *Client {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = defaultMaxResponseBytes
	}
	// A line break in a header value would let the caller inject headers.
	ua := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, cfg.UserAgent)
	if ua == "" {
		ua = defaultUserAgent
	}
	return &Client{
		l:       l,
		max:     cfg.MaxResponseBytes,
		ua:      ua,
		scratch: make([]byte, scratchSize),
		dns:     make(map[string]*dnsEntry),
	}
}

// Get issues GET rawURL (http only; https is an error) on the loop. cb runs
// on the loop goroutine exactly once, later (never synchronously inside Get),
// with a response of any status or an error. timeout covers everything
// (resolve, connect, write, read); 0 means none. The returned cancel (loop
// goroutine only) releases the connection at once; cb then runs later with
// an error wrapping context.Canceled. Cancelling a finished call does nothing.
func (c *Client) Get(rawURL string, timeout time.Duration, cb func(*Response, error)) (cancel func()) {
	k := &call{c: c, cb: cb, fd: -1, deferCB: true}
	defer func() { k.deferCB = false }()
	if timeout > 0 {
		k.timeout = timeout
		k.timer = c.l.AfterFunc(timeout, k.onTimeout)
	}
	t, err := c.target(rawURL)
	k.t = t
	switch {
	case err != nil:
		k.fail(err)
	case t.addrs != nil:
		k.addrs = t.addrs
		k.dial()
	default:
		c.resolve(k)
	}
	return k.cancel
}

// target is what a call needs from its URL. A worker calls the same URL
// over and over, so the client keeps the last one parsed.
type target struct {
	raw   string       // as given
	url   string       // for error messages: raw, password redacted
	host  string       // Host header: host[:port] from the URL
	name  string       // host name or IP literal to connect to
	uri   string       // request target
	port  uint16       // from the URL, or 80
	addrs []netip.Addr // the address of an IP literal, shared by its calls
}

// target returns rawURL parsed, from the cache when it is the last URL.
// With an error, the target still has url set.
func (c *Client) target(rawURL string) (*target, error) {
	if t := c.last; t != nil && t.raw == rawURL {
		return t, nil
	}
	t := &target{raw: rawURL, url: rawURL}
	if err := t.parse(); err != nil {
		return t, err
	}
	if ip, err := netip.ParseAddr(t.name); err == nil {
		t.addrs = []netip.Addr{ip.Unmap()}
	}
	c.last = t
	return t, nil
}

func (t *target) parse() error {
	u, err := url.Parse(t.raw)
	if err != nil {
		return err // already reads "parse <url>: ..."
	}
	if u.User != nil {
		t.url = u.Redacted() // errors end up in logs: keep passwords out
	}
	switch u.Scheme {
	case "http":
	case "https":
		return errors.New("https is not supported, only plain http")
	default:
		return fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("missing host")
	}
	t.port = 80
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("invalid port %q", p)
		}
		t.port = uint16(n)
	}
	t.host, t.name, t.uri = u.Host, u.Hostname(), u.RequestURI()
	return nil
}

func (c *Client) getBuf() []byte {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free[n-1] = nil
		c.free = c.free[:n-1]
		return b
	}
	return nil
}

func (c *Client) putBuf(b []byte) {
	if b == nil || cap(b) > maxFreeBufCap || len(c.free) >= maxFreeBufs {
		return
	}
	c.free = append(c.free, b[:0])
}
