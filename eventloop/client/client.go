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
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"demo/eventloop"

	"golang.org/x/sys/unix"
)

const (
	defaultMaxResponseBytes = 1 << 20
	defaultUserAgent        = "demo"

	// dnsTTL is how long a successful lookup is reused. Go's resolver does
	// not expose record TTLs; 30 s turns a burst of calls to one host into
	// one lookup without pinning an address for long.
	dnsTTL = 30 * time.Second
	// lookupTimeout bounds a shared lookup even when the calls waiting for
	// it have no timeout of their own.
	lookupTimeout = 10 * time.Second
	// dnsSweepAt is the cache size at which expired entries are dropped.
	dnsSweepAt = 1024

	// scratchSize is the shared read buffer: one per client, not per call,
	// so a call that is only waiting holds no buffer at all.
	scratchSize = 64 << 10
	// Buffers of finished calls are kept for reuse, up to this many and this
	// capacity, so a burst of calls does not churn the allocator.
	maxFreeBufs   = 64
	maxFreeBufCap = 64 << 10

	// max1xx mirrors net/http's Transport: informational responses a server
	// may send before the real one.
	max1xx = 5
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

	// For tests: sockets currently open, lookups started, parses run,
	// requests written whole right after connect(2) (the fast path), and
	// writes that left part of a request for EPOLLOUT.
	open        int
	lookups     int
	parses      int
	earlyWrites int
	shortWrites int
}

// dnsEntry is a cached lookup result, or a lookup in flight while pending.
type dnsEntry struct {
	addrs   []netip.Addr
	expires time.Time
	pending bool
	waiters []*call // calls waiting for the pending lookup
}

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

// state is where a call is. Transitions only move forward:
// resolving -> connecting (-> connecting on the next address) -> writing ->
// reading -> done, and any state -> done on error, timeout or cancel.
type state uint8

const (
	stateResolving state = iota
	stateConnecting
	stateWriting
	stateReading
	stateDone
)

// call is one GET in flight. It is kept small (a few hundred bytes plus the
// response received so far) so that thousands can wait at once.
type call struct {
	c       *Client
	t       *target
	cb      func(*Response, error)
	timeout time.Duration
	timer   *eventloop.Timer

	state    state
	deferCB  bool // inside Get or cancel: post the callback instead of calling it
	addrs    []netip.Addr
	next     int            // next address to try
	peer     netip.AddrPort // address being connected to
	firstErr error          // first connect failure: the one worth reporting
	fd       int
	nodelay  bool // TCP_NODELAY is set

	out     []byte  // request bytes a short write left over
	in      []byte  // response bytes so far, once they span reads
	scan    int     // header phase: where to resume looking for a blank line
	sawLine bool    // header phase: the status line was checked
	frame   framing // what the response still needs, once its header is parsed
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

func (k *call) cancel() {
	if k.state == stateDone {
		return
	}
	// Like cancelling an asyncio task: the caller is in the middle of
	// something, so the callback comes later.
	k.deferCB = true
	k.fail(context.Canceled)
}

func (k *call) onTimeout() {
	k.timer = nil // fired
	if k.state == stateDone {
		return
	}
	k.fail(fmt.Errorf("%s: %w after %v", k.phase(), ErrTimeout, k.timeout))
}

// phase names what the call was doing, for timeout messages.
func (k *call) phase() string {
	switch k.state {
	case stateResolving:
		return "lookup " + k.t.name
	case stateConnecting:
		return "connect " + k.peer.String()
	case stateWriting:
		return "write request"
	default:
		return "read response"
	}
}

// resolve finds k's addresses without blocking the loop: from the cache, by
// joining a lookup in flight, or by starting one on an owned goroutine.
func (c *Client) resolve(k *call) {
	k.state = stateResolving
	e := c.dns[k.t.name]
	switch {
	case e != nil && e.pending:
		e.waiters = append(e.waiters, k)
		return
	case e != nil && c.l.Now().Before(e.expires):
		k.addrs = e.addrs
		k.dial()
		return
	case e == nil:
		if len(c.dns) >= dnsSweepAt {
			c.sweepDNS()
		}
		e = &dnsEntry{}
		c.dns[k.t.name] = e
	}
	e.pending = true
	e.waiters = append(e.waiters, k)
	c.lookups++
	name, l := k.t.name, c.l
	l.Go(func() {
		ctx, cancel := context.WithTimeout(l.Context(), lookupTimeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		l.Post(func() { c.resolved(name, e, addrs, err) })
	})
}

func (c *Client) sweepDNS() {
	now := c.l.Now()
	for name, e := range c.dns {
		if !e.pending && !now.Before(e.expires) {
			delete(c.dns, name)
		}
	}
}

// resolved runs on the loop with a lookup's result and releases its waiters.
func (c *Client) resolved(name string, e *dnsEntry, addrs []netip.Addr, err error) {
	waiters := e.waiters
	e.waiters, e.pending = nil, false
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("lookup %s: no addresses", name)
	}
	if err != nil {
		delete(c.dns, name) // failures are not cached: the next call retries
		for _, k := range waiters {
			if k.state != stateDone {
				k.fail(err) // *net.DNSError reads "lookup <name> on <server>: ..."
			}
		}
		return
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	// IPv4 first: a local server (Uvicorn's default 127.0.0.1) usually
	// listens on IPv4 only, and the other addresses remain fallbacks.
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
		switch {
		case a.Is4() == b.Is4():
			return 0
		case a.Is4():
			return -1
		default:
			return 1
		}
	})
	e.addrs, e.expires = addrs, c.l.Now().Add(dnsTTL)
	for _, k := range waiters {
		if k.state != stateDone {
			k.addrs = addrs
			k.dial()
		}
	}
}

// dial starts connecting to the next address, falling back to the one after
// when a connect fails at once; with none left the call fails with the first
// error, which is the one about the preferred address.
func (k *call) dial() {
	k.state = stateConnecting
	for k.next < len(k.addrs) {
		k.peer = netip.AddrPortFrom(k.addrs[k.next], k.t.port)
		k.next++
		err := k.connect()
		if err == nil {
			return // the request is out, or waits for the connection
		}
		if k.firstErr == nil {
			k.firstErr = err
		}
	}
	k.fail(k.firstErr)
}

// connect opens a non-blocking socket to k.peer, registers it with the
// loop, and writes the request if the connection is already up. An error
// means nothing was sent, so dial may try the next address.
//
// Writing at once is what makes a call cheap on loopback, where connect(2)
// runs the whole handshake before it returns EINPROGRESS: the request goes
// out straight away and the socket needs one registration, for EPOLLIN,
// instead of waiting a loop iteration for EPOLLOUT, asking SO_ERROR and
// switching the registration to EPOLLIN. During a burst that wait is long:
// EPOLLOUT queues behind every fd already ready. A socket still connecting
// refuses the write with EAGAIN and completes in onEvent as before; one
// whose connect already failed reports the failure (ECONNREFUSED) from the
// write.
func (k *call) connect() error {
	ip := k.peer.Addr()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa4 := &k.c.sa4 // Connect only reads it: one per client will do
		sa4.Port, sa4.Addr = int(k.t.port), ip.As4()
		sa = sa4
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(k.t.port), Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	k.fd, k.nodelay = fd, false
	k.c.open++
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		k.closeFD()
		return fmt.Errorf("connect %s: %w", k.peer, err)
	}
	// Registered before the write, so that a failure here still leaves
	// the request unsent.
	if err := k.c.l.Add(fd, eventloop.EventRead, k.onEvent); err != nil {
		k.closeFD()
		return fmt.Errorf("connect %s: %w", k.peer, err)
	}
	switch done, err := k.write(k.c.buildRequest(k), true); {
	case done:
		k.c.earlyWrites++
		k.state = stateReading
		return nil
	case err == unix.EAGAIN:
		// Nothing went out: still connecting. onEvent completes the
		// connect and then writes k.out.
	case err != nil:
		k.closeFD()
		return fmt.Errorf("connect %s: %w", k.peer, err)
	default: // connected, but only part of the request went out
		k.state = stateWriting
	}
	if err := k.c.l.Modify(fd, eventloop.EventWrite); err != nil {
		k.fail(err)
	}
	return nil
}

// onEvent is the one readiness handler of k's socket.
func (k *call) onEvent(uint32) {
	switch k.state {
	case stateConnecting:
		k.connected()
	case stateWriting:
		k.flush()
	case stateReading:
		k.read()
	}
}

func (k *call) connected() {
	soErr, err := unix.GetsockoptInt(k.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soErr != 0 {
		err = unix.Errno(soErr)
	}
	if err != nil {
		k.closeFD()
		if k.firstErr == nil {
			k.firstErr = fmt.Errorf("connect %s: %w", k.peer, err)
		}
		k.dial()
		return
	}
	k.state = stateWriting
	k.flush()
}

func (c *Client) buildRequest(k *call) []byte {
	b := c.reqBuf[:0]
	b = append(b, "GET "...)
	b = append(b, k.t.uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, k.t.host...)
	b = append(b, "\r\nUser-Agent: "...)
	b = append(b, c.ua...)
	b = append(b, "\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
	if cap(b) <= maxFreeBufCap { // a huge URL must not pin its buffer
		c.reqBuf = b
	}
	return b
}

// write sends req and reports whether all of it went out; otherwise k.out
// holds the rest, copied if req is the client's shared request buffer
// (shared) rather than k.out itself. EAGAIN is the only error that leaves
// anything to retry.
func (k *call) write(req []byte, shared bool) (done bool, err error) {
	// MSG_NOSIGNAL: a peer that already closed yields EPIPE, not SIGPIPE.
	n, err := unix.SendmsgN(k.fd, req, nil, nil, unix.MSG_NOSIGNAL)
	if err == unix.EINTR {
		err = unix.EAGAIN
	}
	if err != nil && err != unix.EAGAIN {
		return false, err
	}
	n = max(n, 0)
	if n == len(req) {
		k.out = nil
		return true, nil
	}
	if k.out = req[n:]; shared {
		k.out = bytes.Clone(k.out)
	}
	if n == 0 {
		return false, err
	}
	k.c.shortWrites++
	if !k.nodelay {
		// Nagle never holds back the first write of a connection (nothing
		// is in flight yet), so TCP_NODELAY is set only when the rest of
		// a short one would otherwise wait for the ACK of what went out.
		k.nodelay = true
		if err := unix.SetsockoptInt(k.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return false, fmt.Errorf("setsockopt TCP_NODELAY: %w", err)
		}
	}
	return false, nil
}

// flush writes what the request's first write left in k.out: all of it
// when the connect completed in onEvent, or the rest of a short write.
func (k *call) flush() {
	done, err := k.write(k.out, false)
	switch {
	case err == unix.EAGAIN, err == nil && !done:
		return // still registered for EPOLLOUT
	case err != nil:
		k.fail(fmt.Errorf("write request: %w", err))
		return
	}
	k.state = stateReading
	if err := k.c.l.Modify(k.fd, eventloop.EventRead); err != nil {
		k.fail(err)
	}
}

func (k *call) read() {
	n, err := unix.Read(k.fd, k.c.scratch)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if err != nil {
		k.fail(fmt.Errorf("read response: %w", err))
		return
	}
	k.consume(k.c.scratch[:n], n == 0)
}

// consume takes newly read bytes (eof: the server closed) and finishes the
// call once the response is complete, malformed or too large. Parsing is
// attempted only when the bytes so far could make a difference, so a
// response that trickles in is not re-parsed on every read.
func (k *call) consume(data []byte, eof bool) {
	buf := data
	if len(k.in) > 0 {
		k.in = append(k.in, data...)
		buf = k.in
	}
	if eof || k.mayBeComplete(buf) {
		k.c.parses++
		resp, f, err := k.c.parser.parse(buf, eof)
		switch {
		case err == nil:
			k.succeed(resp)
			return
		case errors.Is(err, io.ErrUnexpectedEOF):
			k.fail(fmt.Errorf("read response: connection closed after %d bytes: %w", len(buf), err))
			return
		case err != errIncomplete:
			k.fail(fmt.Errorf("parse response: %w", err))
			return
		}
		k.frame = f
		if f.headerLen > 0 && f.bodyLen >= 0 && int64(f.headerLen)+f.bodyLen > k.c.max {
			k.fail(fmt.Errorf("response of %d bytes exceeds the limit of %d", int64(f.headerLen)+f.bodyLen, k.c.max))
			return
		}
	}
	if int64(len(buf)) > k.c.max {
		k.fail(fmt.Errorf("response exceeds the limit of %d bytes", k.c.max))
		return
	}
	if len(k.in) == 0 { // buf is the shared scratch: keep a copy
		k.in = append(k.c.getBuf(), buf...)
	}
}

// mayBeComplete reports whether buf could now hold a complete response
// (or reveal a malformed one), going by what earlier parses learnt.
func (k *call) mayBeComplete(buf []byte) bool {
	f := &k.frame
	switch {
	case f.headerLen == 0:
		// Parse at the first complete line, to reject a non-HTTP peer at
		// once, and then whenever a blank line may end a header block.
		from := max(k.scan-2, 0)
		k.scan = len(buf)
		if !k.sawLine {
			k.sawLine = bytes.IndexByte(buf[from:], '\n') >= 0
			return k.sawLine
		}
		return bytes.Contains(buf[from:], []byte("\n\n")) || bytes.Contains(buf[from:], []byte("\n\r\n"))
	case f.chunked:
		// A chunked body ends with an empty line (after the last chunk and
		// any trailers). Data after it would delay completion until EOF,
		// which a "Connection: close" server sends anyway.
		return bytes.HasSuffix(buf, []byte("\n\n")) || bytes.HasSuffix(buf, []byte("\n\r\n"))
	case f.bodyLen >= 0:
		return int64(len(buf)) >= int64(f.headerLen)+f.bodyLen
	default:
		return false // body delimited by EOF
	}
}

func (k *call) succeed(resp *Response) {
	cb := k.finish()
	cb(resp, nil) // consume runs in a loop callback, never inside Get
}

func (k *call) fail(err error) {
	cb := k.finish()
	err = &callError{url: k.t.url, err: err}
	if k.deferCB {
		k.c.l.Post(func() { cb(nil, err) })
		return
	}
	cb(nil, err)
}

// finish releases everything the call holds, exactly once, and returns the
// callback to run.
func (k *call) finish() func(*Response, error) {
	k.state = stateDone
	if k.timer != nil {
		k.c.l.StopTimer(k.timer)
		k.timer = nil
	}
	k.closeFD()
	k.c.putBuf(k.in)
	k.in, k.out, k.addrs = nil, nil, nil
	cb := k.cb
	k.cb = nil
	return cb
}

func (k *call) closeFD() {
	if k.fd < 0 {
		return
	}
	// Remove only fails for an fd epoll no longer knows; closing it below
	// drops it from the epoll set anyway.
	_ = k.c.l.Remove(k.fd)
	_ = unix.Close(k.fd) // nothing to flush: a failed close still frees the fd
	k.fd = -1
	k.c.open--
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

// errIncomplete means more bytes could change a parse's outcome.
var errIncomplete = errors.New("incomplete response")

// framing is what a parse learnt about a response still incomplete, so
// the caller can skip parses that cannot succeed yet.
type framing struct {
	headerLen int   // bytes up to the end of the final header block; 0 if not there yet
	bodyLen   int64 // declared Content-Length, or -1
	chunked   bool
}

// parseResponse parses the response in buf with net/http's parser. eof says
// the server closed the connection after buf. It returns the response once
// complete; errIncomplete (with what is known of the framing) while more
// bytes could change the outcome; io.ErrUnexpectedEOF if eof cut it short;
// or the parser's error for a malformed response. It never retains buf.
func parseResponse(buf []byte, eof bool) (*Response, framing, error) {
	var p parser
	return p.parse(buf, eof)
}

// parser keeps its bufio.Reader between parses; a Client owns one.
type parser struct {
	src feeder
	br  *bufio.Reader
}

// feeder serves buf to the parser and records whether the parser wanted
// more than buf holds: a parse that failed then is inconclusive.
type feeder struct {
	buf       []byte
	off       int
	eof       bool
	exhausted bool
}

func (f *feeder) Read(p []byte) (int, error) {
	if f.off < len(f.buf) {
		n := copy(p, f.buf[f.off:])
		f.off += n
		return n, nil
	}
	f.exhausted = true
	if f.eof {
		return 0, io.EOF
	}
	return 0, errIncomplete
}

func (p *parser) parse(buf []byte, eof bool) (*Response, framing, error) {
	p.src = feeder{buf: buf, eof: eof}
	if p.br == nil {
		p.br = bufio.NewReader(&p.src)
	} else {
		p.br.Reset(&p.src)
	}
	resp, f, err := p.parseFrom(p.br)
	exhausted := p.src.exhausted
	p.src = feeder{} // drop the reference to buf
	if err != nil && exhausted {
		if !eof {
			return nil, f, errIncomplete
		}
		return nil, f, io.ErrUnexpectedEOF
	}
	return resp, f, err
}

func (p *parser) parseFrom(br *bufio.Reader) (*Response, framing, error) {
	f := framing{bodyLen: -1}
	for informational := 0; ; informational++ {
		hr, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, f, err
		}
		// 1xx (but 101, which is final) precede the real response and
		// have no body.
		if hr.StatusCode >= 100 && hr.StatusCode < 200 && hr.StatusCode != http.StatusSwitchingProtocols {
			if informational == max1xx {
				return nil, f, errors.New("too many 1xx informational responses")
			}
			continue
		}
		f.headerLen = p.src.off - br.Buffered()
		f.bodyLen = hr.ContentLength
		f.chunked = slices.Contains(hr.TransferEncoding, "chunked")
		body, err := p.readBody(hr, f)
		if err != nil {
			return nil, f, err
		}
		return &Response{
			Proto:      hr.Proto,
			StatusCode: hr.StatusCode,
			Status:     hr.Status,
			Header:     hr.Header,
			Body:       body,
		}, f, nil
	}
}

func (p *parser) readBody(hr *http.Response, f framing) ([]byte, error) {
	switch {
	case hr.Body == http.NoBody || f.bodyLen == 0:
		return nil, nil
	case f.bodyLen > 0:
		// Check before allocating: the length is the server's claim.
		if f.bodyLen > int64(len(p.src.buf)-f.headerLen) {
			p.src.exhausted = true
			return nil, io.ErrUnexpectedEOF
		}
		body := make([]byte, f.bodyLen)
		_, err := io.ReadFull(hr.Body, body)
		return body, err
	case !f.chunked && !p.src.eof:
		// Delimited by EOF, which has not come yet.
		p.src.exhausted = true
		return nil, errIncomplete
	default:
		return io.ReadAll(hr.Body)
	}
}
