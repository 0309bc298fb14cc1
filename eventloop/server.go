package eventloop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	defaultMaxHeaderBytes   = 16 << 10
	defaultMaxBodyBytes     = 1 << 20
	defaultKeepAliveTimeout = 5 * time.Second
	defaultHeaderTimeout    = 10 * time.Second
	defaultAcceptBatch      = 100 // asyncio's backlog for _accept_connection

	// readSize is how much one read(2) may bring in.
	readSize = 64 << 10
	// pipelineLimit bounds what a connection buffers while it is busy with
	// a request: past it the loop stops reading until the response is out,
	// so a client that pipelines without reading cannot grow memory.
	pipelineLimit = 64 << 10
	// flushThreshold is how many response bytes a batch of pipelined
	// requests may hold back before they are written anyway.
	flushThreshold = 64 << 10
	// maxChunkLine matches net/http's limit on a chunk-size line.
	maxChunkLine = 4096
	// maxRetained is the largest per-connection input buffer kept for reuse.
	maxRetained = 64 << 10
	// maxRetainedOut is the largest output buffer a connection keeps between
	// responses: every connection has one now (responses are built in it),
	// so it stays small — room for a batch of pipelined answers.
	maxRetainedOut = 16 << 10
	// lingerTimeout bounds how long a connection that was answered with an
	// error drains input after shutdown(SHUT_WR). Closing a socket with
	// unread input sends RST, which can destroy the error response before
	// the client reads it; net/http and nginx linger for the same reason.
	lingerTimeout = 500 * time.Millisecond
	// acceptRetryDelay is how long accepting pauses after EMFILE and
	// friends: the listener stays readable, so retrying at once would spin.
	acceptRetryDelay = 100 * time.Millisecond
)

// ServerConfig tunes a Server. Zero fields take the documented defaults.
type ServerConfig struct {
	MaxHeaderBytes   int           // default 16 KiB: a larger header block gets 431 and the connection closes
	MaxBodyBytes     int64         // default 1 MiB: a larger body (declared or chunked) gets 413 and the connection closes
	KeepAliveTimeout time.Duration // default 5s: a connection waiting for a request this long is closed, a brand new one included
	// RequestHeaderTimeout (default 10s) bounds how long a request's header
	// block may take from its first byte. Past it the client gets 408 and
	// the connection closes, so a slowloris that sends a byte now and then
	// (each byte restarts the keep-alive clock) cannot pin a connection.
	RequestHeaderTimeout time.Duration
	// LimitConcurrency, when > 0, is uvicorn's --limit-concurrency: a
	// request that completes while more than LimitConcurrency connections
	// are open, or LimitConcurrency requests are already in flight, never
	// reaches the handler; it gets 503 {"detail":"Service Unavailable"} and
	// the connection closes. Accepting goes on, so an overloaded worker
	// fails fast instead of leaving clients in the backlog. (Uvicorn
	// compares with >= including the current connection, which admits only
	// N-1 connections; here exactly N are served.)
	LimitConcurrency int
	// ExclusiveListener says the listener is this server's alone (its own
	// SO_REUSEPORT socket). Shutdown then accepts every connection the
	// kernel queued on it, as its last step, since the owner closes it next
	// and that would reset them. Leave it false on a shared socket: what is
	// queued there belongs to the other workers.
	ExclusiveListener bool
	// EpollExclusive registers a listener shared with other processes with
	// EPOLLEXCLUSIVE: the kernel then wakes one of the loops waiting on it
	// per new connection instead of every one of them (Linux >= 4.5). It
	// has to sit in the loop's main epoll set, where the loop waits: a
	// nested set (the urgent one) has no waiter of its own, and the kernel
	// then goes on to wake the other processes too. So the listener loses
	// the urgent set's head start during a burst. AcceptBatch then
	// defaults to 1, as nginx does with multi_accept off: a woken loop that
	// drained the queue would take what the wake-up meant for another one.
	EpollExclusive bool
	// AcceptBatch (default 100) is how many pending connections one listener
	// readiness event accepts (until EAGAIN) before any handler runs, exactly
	// like asyncio's _accept_connection(backlog=100). With workers sharing a
	// socket this is why one worker may grab several connections at once.
	AcceptBatch int
	ServerName  string // default "demo": the Server header
	// AccessLog, if set, is called on the loop after each response is
	// queued. For requests rejected before their header parsed, method,
	// target and proto are empty.
	AccessLog func(remoteAddr, method, target, proto string, status int)
	// ErrorLog, if set, receives unexpected socket errors and handler
	// panics; misbehaving clients are not reported here.
	ErrorLog func(msg string, err error)
}

func (c *ServerConfig) setDefaults() {
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = defaultKeepAliveTimeout
	}
	if c.RequestHeaderTimeout <= 0 {
		c.RequestHeaderTimeout = defaultHeaderTimeout
	}
	if c.AcceptBatch <= 0 {
		c.AcceptBatch = defaultAcceptBatch
		if c.EpollExclusive {
			c.AcceptBatch = 1
		}
	}
	if c.ServerName == "" {
		c.ServerName = "demo"
	}
	c.ServerName = string(appendHeaderValue(nil, c.ServerName))
}

// Request is one complete request, body included.
type Request struct {
	*http.Request        // parsed with http.ReadRequest; its Body is http.NoBody
	Body          []byte // the whole body, Content-Length or de-chunked; owned by the handler
	RemoteAddr    string // "127.0.0.1:54321"
}

// Handler serves a request on the loop goroutine. It may respond before it
// returns or later, from any loop callback (timer, Post, client completion).
type Handler func(w *ResponseWriter, r *Request)

// ResponseWriter answers exactly one request.
type ResponseWriter struct {
	c      *conn
	req    *http.Request
	header http.Header
	done   bool
}

// Header returns the extra headers Respond sends. Framing headers
// (Content-Length, Transfer-Encoding, Connection) and Date, Server and
// Content-Type belong to Respond and are ignored here.
func (w *ResponseWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// ClientGone reports whether the client hung up (or half-closed) the
// connection: a response may no longer reach it.
func (w *ResponseWriter) ClientGone() bool { return w.c.fd < 0 || w.c.rdClosed || w.c.hup }

// Respond sends the response. Call it once, on the loop goroutine, during the
// handler or later. It adds Content-Length, Content-Type (if non-empty), Date,
// Server and, when the connection will close after it, Connection: close.
// For HEAD only the headers are sent. Later calls, and a call after the
// client went away, do nothing.
func (w *ResponseWriter) Respond(status int, contentType string, body []byte) {
	if w.done {
		return
	}
	w.done = true
	c := w.c
	s := c.s
	s.inFlight--
	c.w = nil
	if c.fd < 0 { // the client is gone: nothing to send, only to forget
		s.forget(c)
		return
	}
	if status < 200 || status > 999 {
		s.logError("handler responded with an invalid status", fmt.Errorf("status %d", status))
		status = http.StatusInternalServerError
	}
	// With the read side hung up nothing more can arrive: close once the
	// requests already buffered are answered.
	closing := w.req.Close || s.shutting || (c.rdClosed && c.off == len(c.in))
	if closing {
		c.closeAfter = true
	}
	keepAlive10 := !closing && !w.req.ProtoAtLeast(1, 1)
	if !c.dispatching {
		// An async answer: advance below answers what was pipelined behind
		// it and writes everything at once.
		c.batching = true
	}
	c.out = s.appendResponse(c.out, status, contentType, w.header, body,
		w.req.Method == http.MethodHead, closing, keepAlive10)
	c.queued()
	s.accessLog(c, w.req, status)
	if !c.dispatching && c.fd >= 0 {
		c.advance()
	}
}

// Flush writes out the responses held back while the loop answers a batch
// of pipelined requests (they are normally written together, once the
// batch is done). A handler about to block the loop calls it, so that the
// answers before its own do not wait for it.
func (s *Server) Flush() {
	for _, c := range s.batch {
		if c.fd >= 0 && !c.wait && c.outPending() {
			c.flush()
		}
	}
}

// ServerStats is a snapshot of a Server's counters.
type ServerStats struct {
	Conns    int    // open connections, plus dead ones whose handler has not responded yet
	InFlight int    // requests handed to the handler and not answered yet
	Requests uint64 // requests handed to the handler so far
	Shed     uint64 // requests answered 503 by LimitConcurrency
}

// Server is an HTTP/1.1 server driven entirely by a Loop: accepting, reading,
// framing, running the handler and writing all happen in loop callbacks, with
// no goroutine per connection. Each connection has at most one request in
// flight; pipelined requests wait in its buffer, so responses go out in
// order. All methods belong to the loop goroutine.
type Server struct {
	loop    *Loop
	lfd     int
	cfg     ServerConfig
	handler Handler

	conns     map[*conn]struct{}
	batch     []*conn // connections inside advance, holding back responses
	listening bool    // lfd is registered with the loop
	retry     *Timer  // resumes accepting after EMFILE
	shutting  bool
	doneFns   []func()
	inFlight  int
	requests  uint64
	shed      uint64

	// Scratch shared by all connections: only the loop goroutine runs.
	rbuf    []byte        // read(2) target
	br      *bufio.Reader // over bytesR, to hand blocks to net/http parsers
	bytesR  bytes.Reader
	dateSec int64
	date    []byte
}

// NewServer serves h on the connections accepted from listenFD, which it
// sets non-blocking and registers with l. The caller keeps owning listenFD.
// Call it on the loop goroutine or before l runs.
func NewServer(l *Loop, listenFD int, cfg ServerConfig, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("new server: nil handler")
	}
	cfg.setDefaults()
	if err := unix.SetNonblock(listenFD, true); err != nil {
		return nil, fmt.Errorf("set listener non-blocking: %w", err)
	}
	s := &Server{
		loop:    l,
		lfd:     listenFD,
		cfg:     cfg,
		handler: h,
		conns:   make(map[*conn]struct{}),
		rbuf:    make([]byte, readSize),
	}
	s.br = bufio.NewReaderSize(&s.bytesR, maxChunkLine)
	if err := s.register(); err != nil {
		return nil, fmt.Errorf("register listener: %w", err)
	}
	s.listening = true
	return s, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{Conns: len(s.conns), InFlight: s.inFlight, Requests: s.requests, Shed: s.shed}
}

// Shutdown stops accepting (the listener leaves the loop but stays open: the
// caller owns it), closes idle keep-alive connections now and lets every
// request already begun finish; those responses carry Connection: close.
// Like net/http, it never drops a request that reached it: a connection
// that has sent part of a request is answered (or cut by
// RequestHeaderTimeout), and one accepted but silent so far keeps its
// KeepAliveTimeout to send its request, since its client has nothing to
// retry on. done runs on the loop, after Shutdown returned, once no
// connection is left. A handler that never responds keeps done from
// running; the caller bounds the wait.
func (s *Server) Shutdown(done func()) {
	if done != nil {
		s.doneFns = append(s.doneFns, done)
	}
	if !s.shutting {
		s.shutting = true
		for c := range s.conns {
			switch {
			case c.w != nil || c.lingering:
				// Finishes on its own, then closes.
			case c.outPending():
				c.closeAfter = true
			default:
				// Waiting for the client. A request may already sit in
				// the socket, its readiness event not handled yet: read
				// it rather than close under it.
				c.read()
				if c.fd >= 0 {
					c.advance()
				}
			}
		}
		// Last, right before the owner closes it: everything queued on our
		// own socket, including what arrived while a handler above ran (a
		// blocking one may take seconds), since the close resets whatever
		// is left in its queue.
		if s.cfg.ExclusiveListener && s.listening {
			s.accept(-1)
		}
		s.stopAccepting()
	}
	s.maybeDone()
}

// Close stops accepting and closes every connection at once. Handlers still
// running may respond later; that does nothing.
func (s *Server) Close() {
	s.shutting = true
	s.stopAccepting()
	for c := range s.conns {
		c.close()
	}
	s.maybeDone()
}

// register puts the listener in the loop: urgent, so that a new connection
// (a health probe) does not wait behind thousands of busy ones, unless it
// must be exclusive.
func (s *Server) register() error {
	if s.cfg.EpollExclusive {
		return s.loop.Add(s.lfd, EventRead|unix.EPOLLEXCLUSIVE, s.onListen)
	}
	return s.loop.AddUrgent(s.lfd, EventRead, s.onListen)
}

func (s *Server) onListen(uint32) {
	// Accept the whole batch before returning to the loop, so every pending
	// connection is ours before any of their handlers runs.
	s.accept(s.cfg.AcceptBatch)
}

// accept takes up to max pending connections (all of them if max < 0).
func (s *Server) accept(max int) {
	for i := 0; (max < 0 || i < max) && s.listening; i++ {
		fd, sa, err := unix.Accept4(s.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN):
				return
			case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED), errors.Is(err, unix.EPROTO),
				errors.Is(err, unix.EPERM), errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.ENETUNREACH),
				errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.EHOSTDOWN), errors.Is(err, unix.ENONET),
				errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ETIMEDOUT):
				continue // this connection failed; the next may not
			default:
				// EMFILE, ENFILE, ENOBUFS, ENOMEM or a broken listener: the
				// listener stays readable, so step back instead of spinning.
				s.pauseAccepting(err)
				return
			}
		}
		s.newConn(fd, sa)
	}
}

func (s *Server) pauseAccepting(err error) {
	s.logError("accept failed; pausing new connections for "+acceptRetryDelay.String(), err)
	s.stopAccepting()
	s.retry = s.loop.AfterFunc(acceptRetryDelay, s.resumeAccepting)
}

func (s *Server) resumeAccepting() {
	s.retry = nil
	if s.shutting || s.listening {
		return
	}
	if err := s.register(); err != nil {
		s.logError("re-register listener", err)
		return
	}
	s.listening = true
}

func (s *Server) stopAccepting() {
	if s.listening {
		if err := s.loop.Remove(s.lfd); err != nil {
			s.logError("unregister listener", err)
		}
		s.listening = false
	}
	if s.retry != nil {
		s.loop.StopTimer(s.retry)
		s.retry = nil
	}
}

func (s *Server) newConn(fd int, sa unix.Sockaddr) {
	// Like asyncio, disable Nagle: small responses must not wait for ACKs.
	// It fails harmlessly on non-TCP sockets.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := &conn{s: s, fd: fd, remote: sockaddrString(sa), events: unix.EPOLLIN | unix.EPOLLRDHUP}
	c.onIdle = c.idleFired
	c.onHeaderTimeout = c.headerFired
	add := s.loop.Add
	if s.loop.Backlogged() {
		// Thousands of fds are ready: in the main set this one's first
		// request would wait behind all of them. It leaves the urgent set
		// once that request is dispatched.
		add, c.urgent = s.loop.AddUrgent, true
	}
	if err := add(fd, c.events, c.handle); err != nil {
		s.logError("register connection", err)
		unix.Close(fd)
		return
	}
	s.conns[c] = struct{}{}
	c.armIdle()
}

// forget drops a connection that is closed and has no handler pending.
func (s *Server) forget(c *conn) {
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.maybeDone()
}

func (s *Server) maybeDone() {
	if !s.shutting || len(s.conns) > 0 || len(s.doneFns) == 0 {
		return
	}
	fns := s.doneFns
	s.doneFns = nil
	for _, fn := range fns {
		s.loop.Post(fn) // never re-entrant: runs after the current callback
	}
}

func (s *Server) logError(msg string, err error) {
	if s.cfg.ErrorLog != nil {
		s.cfg.ErrorLog(msg, err)
	}
}

func (s *Server) accessLog(c *conn, req *http.Request, status int) {
	if s.cfg.AccessLog == nil {
		return
	}
	if req == nil {
		s.cfg.AccessLog(c.remote, "", "", "", status)
		return
	}
	s.cfg.AccessLog(c.remote, req.Method, req.RequestURI, req.Proto, status)
}

// httpDate is the Date header value, formatted at most once per second.
func (s *Server) httpDate() []byte {
	now := s.loop.Now()
	if sec := now.Unix(); sec != s.dateSec || s.date == nil {
		s.date = now.UTC().AppendFormat(s.date[:0], http.TimeFormat)
		s.dateSec = sec
	}
	return s.date
}

// appendResponse renders a whole response into b.
func (s *Server) appendResponse(b []byte, status int, contentType string, extra http.Header, body []byte, head, closing, keepAlive10 bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if text := http.StatusText(status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "Unknown"...)
	}
	b = append(b, "\r\nDate: "...)
	b = append(b, s.httpDate()...)
	b = append(b, "\r\nServer: "...)
	b = append(b, s.cfg.ServerName...)
	if contentType != "" {
		b = append(b, "\r\nContent-Type: "...)
		b = appendHeaderValue(b, contentType)
	}
	bodyAllowed := status != http.StatusNoContent && status != http.StatusNotModified
	if bodyAllowed {
		b = append(b, "\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	for k, vs := range extra {
		if reservedHeader(k) || !validHeaderKey(k) {
			continue
		}
		for _, v := range vs {
			b = append(b, "\r\n"...)
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendHeaderValue(b, v)
		}
	}
	if closing {
		b = append(b, "\r\nConnection: close"...)
	} else if keepAlive10 {
		b = append(b, "\r\nConnection: keep-alive"...) // HTTP/1.0 needs to be told
	}
	b = append(b, "\r\n\r\n"...)
	if bodyAllowed && !head {
		b = append(b, body...)
	}
	return b
}

func reservedHeader(k string) bool {
	for _, r := range [...]string{"Content-Length", "Transfer-Encoding", "Connection", "Date", "Server", "Content-Type"} {
		if strings.EqualFold(k, r) {
			return true
		}
	}
	return false
}

func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// appendHeaderValue appends v with CR, LF and NUL replaced by spaces, so a
// value cannot split the response.
func appendHeaderValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		// A unix-socket client is almost always unnamed (x/sys shows that
		// as "@"); there is no address worth logging, only the transport.
		if a.Name == "" || a.Name == "@" {
			return "unix"
		}
		return "unix:" + a.Name
	}
	return ""
}

// isPeerError reports errors a client causes by going away; they are not
// worth an ErrorLog line.
func isPeerError(err error) bool {
	return errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ETIMEDOUT) ||
		errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH)
}

var continueResponse = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// conn is one accepted connection. Its life, all on the loop:
//
//	reading  → (request complete) in flight → (Respond) writing → reading …
//
// and from any state to closed. A connection answered with an error, or
// closed with unread input, lingers (write side shut, input drained) before
// it closes. A connection that dies while its handler runs stays in the
// server's table until the handler responds.
type conn struct {
	s      *Server
	fd     int // -1 once closed
	remote string
	events uint32 // the epoll interest currently registered

	in  []byte // bytes read; the unconsumed ones start at off
	off int

	// Parse state of the message at in[off:]; offsets are relative to off.
	scan      int           // where the search for the header block's end resumes
	req       *http.Request // parsed header block waiting for its body, or nil
	hdrLen    int
	chunks    chunkScanner
	continued bool // 100 Continue was sent for req

	// Response bytes not written yet, from outOff: held back while a batch
	// of pipelined requests is answered (batching), or refused by the
	// socket (wait: EPOLLOUT will tell when it takes more).
	out      []byte
	outOff   int
	batching bool
	wait     bool
	urgent   bool // registered in the loop's urgent set until its first request

	w           *ResponseWriter // the request in flight, or nil
	dispatching bool            // the handler is on the stack
	rdClosed    bool            // read returned EOF: the peer hung up its sending side
	hup         bool            // EPOLLRDHUP seen while reading was paused
	closeAfter  bool            // close once out is flushed
	failed      bool            // answered with an error: linger before closing
	lingering   bool
	requests    int  // requests dispatched (or shed) on this connection
	hdrStarted  bool // bytes of the next request's header have arrived

	idleDeadline time.Time // zero unless waiting for the client
	idleTimer    *Timer
	onIdle       func()
	lingerTimer  *Timer

	// The RequestHeaderTimeout clock: unlike the idle one, arriving bytes
	// do not restart it. It runs from when the connection starts waiting
	// on a begun header until the header block is complete.
	hdrDeadline     time.Time
	hdrTimer        *Timer
	onHeaderTimeout func()
}

func (c *conn) outPending() bool { return c.outOff < len(c.out) }

func (c *conn) handle(ev uint32) {
	if c.lingering {
		c.drainLinger()
		return
	}
	if ev&unix.EPOLLOUT != 0 && c.outPending() {
		c.flush()
		if c.fd < 0 || c.lingering {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		switch {
		case c.events&unix.EPOLLIN != 0:
			c.read() // the read itself tells data, EOF or error apart
		case ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0:
			c.close()
		case ev&unix.EPOLLRDHUP != 0:
			// Reading is paused (pipeline limit): note the hang-up; the
			// bytes before it are read, and answered, once reading resumes.
			c.hup = true
		}
		if c.fd < 0 {
			return
		}
	}
	c.advance()
}

func (c *conn) read() {
	n, err := unix.Read(c.fd, c.s.rbuf)
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Read(c.fd, c.s.rbuf)
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		return
	case err != nil:
		if !isPeerError(err) {
			c.s.logError("read from "+c.remote, err)
		}
		c.close()
		return
	case n == 0:
		c.rdClosed = true
		return
	}
	if c.off > 0 { // make room at the front rather than grow
		c.in = c.in[:copy(c.in, c.in[c.off:])]
		c.off = 0
	}
	c.in = append(c.in, c.s.rbuf[:n]...)
	c.idleDeadline = time.Time{} // bytes arrived: the idle clock restarts when we wait again
	if c.req == nil {
		c.hdrStarted = true // the next request has begun (consume corrects it for a body's bytes)
	}
}

// advance answers what the buffer holds, as far as one request in flight at a
// time allows, then decides what to wait for next. The responses of the
// requests it answers are written together when it is done: one write(2)
// per batch of pipelined requests instead of one per response.
func (c *conn) advance() {
	s := c.s
	c.batching = true
	s.batch = append(s.batch, c)
	for c.fd >= 0 && c.w == nil && !c.closeAfter && !c.wait {
		if !c.step() {
			break
		}
	}
	c.batching = false
	s.batch[len(s.batch)-1] = nil
	s.batch = s.batch[:len(s.batch)-1]
	if c.fd >= 0 && !c.wait && c.outPending() {
		c.flush()
	}
	if c.fd < 0 || c.lingering {
		return
	}
	if c.w == nil && !c.outPending() && !c.closeAfter {
		// Waiting for the client.
		if c.rdClosed || (c.s.shutting && c.requests > 0 && !c.hdrStarted && c.req == nil) {
			// Nothing more will come, or nothing more is wanted: shutting
			// down, an idle keep-alive connection goes (see Shutdown).
			c.close()
			return
		}
		c.armIdle()
		if c.req == nil && c.hdrStarted {
			c.armHeaderTimeout()
		}
	}
	c.updateInterest()
}

// step makes progress on the message at in[off:]. It reports true when it
// dispatched a request or answered with an error, false when it needs more
// bytes.
func (c *conn) step() bool {
	s := c.s
	if c.req == nil {
		if c.scan == 0 && !c.skipEmptyLines() {
			return false
		}
		buf := c.in[c.off:]
		end := c.headerEnd(buf)
		if end < 0 {
			if len(buf) > s.cfg.MaxHeaderBytes {
				c.fail(http.StatusRequestHeaderFieldsTooLarge, "request header fields too large")
				return true
			}
			return false
		}
		if end > s.cfg.MaxHeaderBytes {
			c.fail(http.StatusRequestHeaderFieldsTooLarge, "request header fields too large")
			return true
		}
		s.bytesR.Reset(buf[:end])
		s.br.Reset(&s.bytesR)
		req, err := http.ReadRequest(s.br)
		if err != nil {
			c.fail(http.StatusBadRequest, err.Error())
			return true
		}
		c.req = req
		c.hdrLen = end
		c.hdrDeadline = time.Time{} // the header is complete: its clock stops
		if status, msg := c.checkHeader(req); status != 0 {
			c.fail(status, msg)
			return true
		}
	}

	req := c.req
	rest := c.in[c.off+c.hdrLen:]
	chunked := len(req.TransferEncoding) > 0 // net/http accepts "chunked" only
	var bodyLen int
	switch {
	case chunked:
		end, status, msg := c.chunks.scan(rest, s.cfg.MaxBodyBytes, s.cfg.MaxHeaderBytes)
		if status != 0 {
			c.fail(status, msg)
			return true
		}
		if end < 0 {
			c.sendContinue()
			return false
		}
		bodyLen = end
	case req.ContentLength > 0:
		if int64(len(rest)) < req.ContentLength {
			c.sendContinue()
			return false
		}
		bodyLen = int(req.ContentLength)
	}

	var body []byte
	if chunked {
		var err error
		if body, err = s.decodeChunked(req, rest[:bodyLen], c.chunks.data); err != nil {
			c.fail(http.StatusBadRequest, err.Error())
			return true
		}
	} else if bodyLen > 0 {
		body = bytes.Clone(rest[:bodyLen])
	}
	c.consume(c.hdrLen + bodyLen)
	c.dispatch(req, body)
	return true
}

// skipEmptyLines drops CRLFs before a request line (RFC 9112 §2.2: some
// clients send one after a body). It reports false if a lone CR at the end
// needs the next byte to decide.
func (c *conn) skipEmptyLines() bool {
	for c.off < len(c.in) {
		switch b := c.in[c.off:]; {
		case b[0] == '\n':
			c.off++
		case b[0] == '\r' && len(b) == 1:
			return false
		case b[0] == '\r' && b[1] == '\n':
			c.off += 2
		default:
			return true
		}
	}
	return true
}

// headerEnd returns the length of the header block (through its empty line)
// or -1. It resumes where the last call stopped, so a header arriving byte by
// byte costs linear time.
func (c *conn) headerEnd(buf []byte) int {
	for {
		i := bytes.IndexByte(buf[c.scan:], '\n')
		if i < 0 {
			c.scan = len(buf)
			return -1
		}
		nl := c.scan + i
		switch {
		case nl+1 < len(buf) && buf[nl+1] == '\n':
			return nl + 2
		case nl+2 < len(buf) && buf[nl+1] == '\r' && buf[nl+2] == '\n':
			return nl + 3
		case nl+1 == len(buf) || (nl+2 == len(buf) && buf[nl+1] == '\r'):
			c.scan = nl // undecided until the next bytes arrive
			return -1
		}
		c.scan = nl + 1
	}
}

// checkHeader applies the rules net/http's server adds on top of
// ReadRequest. It returns a status and message to reject with, or 0.
func (c *conn) checkHeader(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported HTTP version " + req.Proto
	}
	// ReadRequest moved Host to req.Host; an empty Host is treated as absent.
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		return http.StatusBadRequest, "missing required Host header"
	}
	if req.ContentLength > c.s.cfg.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, "request body too large"
	}
	if e := req.Header["Expect"]; len(e) > 0 && req.ProtoAtLeast(1, 1) {
		if len(e) > 1 || !strings.EqualFold(e[0], "100-continue") {
			return http.StatusExpectationFailed, "unsupported Expect header"
		}
	}
	return 0, ""
}

// sendContinue sends the interim 100 once, when a client that asked for it
// has sent its header but not yet its body.
func (c *conn) sendContinue() {
	if c.continued || len(c.req.Header["Expect"]) == 0 || !c.req.ProtoAtLeast(1, 1) {
		return
	}
	c.continued = true
	c.output(continueResponse)
}

// consume drops one parsed message from the buffer and resets parse state.
func (c *conn) consume(n int) {
	c.off += n
	c.hdrStarted = c.off < len(c.in) // a pipelined request has begun
	c.scan, c.req, c.hdrLen, c.chunks, c.continued = 0, nil, 0, chunkScanner{}, false
	if c.off == len(c.in) {
		c.off = 0
		c.in = c.in[:0]
		if cap(c.in) > maxRetained {
			c.in = nil
		}
	}
}

func (c *conn) dispatch(req *http.Request, body []byte) {
	s := c.s
	c.idleDeadline = time.Time{}
	c.requests++
	if c.urgent {
		// Its first request is here: from now on it waits its turn.
		c.urgent = false
		if err := s.loop.Demote(c.fd, c.events); err != nil {
			s.logError("register connection", err)
			c.close()
			return
		}
	}
	if n := s.cfg.LimitConcurrency; n > 0 && (len(s.conns) > n || s.inFlight >= n) {
		c.shed(req)
		return
	}
	req.RemoteAddr = c.remote
	req.Body = http.NoBody
	// One allocation for both halves of the exchange.
	x := &struct {
		w ResponseWriter
		r Request
	}{ResponseWriter{c: c, req: req}, Request{Request: req, Body: body, RemoteAddr: c.remote}}
	w := &x.w
	c.w = w
	s.inFlight++
	s.requests++
	c.dispatching = true
	defer func() {
		if p := recover(); p != nil {
			// Like Uvicorn with an app exception: 500, keep serving.
			s.logError("handler panic serving "+req.RequestURI, fmt.Errorf("%v\n%s", p, debug.Stack()))
			if !w.done {
				w.req.Close = true
				w.Respond(http.StatusInternalServerError, "application/json", []byte(`{"error":"internal server error"}`))
			}
		}
		c.dispatching = false
	}()
	s.handler(w, &x.r)
}

// shed answers 503 instead of running the handler (LimitConcurrency) and
// closes the connection afterwards, as uvicorn does. The request was read
// whole, so there is nothing to linger for unless more is pipelined.
func (c *conn) shed(req *http.Request) {
	s := c.s
	s.shed++
	c.closeAfter = true
	c.out = s.appendResponse(c.out, http.StatusServiceUnavailable, "application/json", nil,
		bodyServiceUnavailable, req.Method == http.MethodHead, true, false)
	c.queued()
	s.accessLog(c, req, http.StatusServiceUnavailable)
}

var bodyServiceUnavailable = []byte(`{"detail":"Service Unavailable"}`)

// fail answers with a JSON error and closes the connection afterwards.
func (c *conn) fail(status int, msg string) {
	s := c.s
	req := c.req
	c.closeAfter = true
	c.failed = true
	quoted, _ := json.Marshal(msg) // a string always marshals
	body := make([]byte, 0, len(quoted)+10)
	body = append(append(append(body, `{"error":`...), quoted...), '}')
	head := req != nil && req.Method == http.MethodHead
	c.out = s.appendResponse(c.out, status, "application/json", nil, body, head, true, false)
	c.queued()
	s.accessLog(c, req, status)
}

// output queues b for the client.
func (c *conn) output(b []byte) {
	c.out = append(c.out, b...)
	c.queued()
}

// queued sends what was just appended to out: at once, unless a batch holds
// it back (advance writes it when done, or earlier once it grows past
// flushThreshold) or the socket is full (EPOLLOUT resumes it).
func (c *conn) queued() {
	switch {
	case c.wait:
	case !c.batching || len(c.out)-c.outOff >= flushThreshold:
		c.flush()
	}
}

// flush writes out what the socket takes, and closes the connection when
// it was its last response.
func (c *conn) flush() {
	n, err := writeSome(c.fd, c.out[c.outOff:])
	if err != nil {
		c.writeFailed(err)
		return
	}
	c.outOff += n
	if c.wait = c.outPending(); c.wait {
		return
	}
	c.out, c.outOff = c.out[:0], 0
	if cap(c.out) > maxRetainedOut {
		c.out = nil // one big response must not pin its buffer forever
	}
	if c.closeAfter {
		c.finish()
	}
}

func (c *conn) writeFailed(err error) {
	if !isPeerError(err) {
		c.s.logError("write to "+c.remote, err)
	}
	c.close()
}

// writeSome writes until done or EAGAIN.
func writeSome(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(fd, b[done:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return done, nil
		case err != nil:
			return done, err
		}
		done += n
	}
	return done, nil
}

// finish closes a connection whose last response is written.
func (c *conn) finish() {
	if !c.rdClosed && (c.failed || c.off < len(c.in)) {
		c.startLinger()
		return
	}
	c.close()
}

func (c *conn) startLinger() {
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		c.close()
		return
	}
	c.lingering = true
	c.in, c.off = nil, 0
	c.idleDeadline, c.hdrDeadline = time.Time{}, time.Time{}
	c.setEvents(unix.EPOLLIN | unix.EPOLLRDHUP)
	c.lingerTimer = c.s.loop.AfterFunc(lingerTimeout, c.close)
}

// drainLinger reads and drops what is available; EOF or an error ends the
// linger.
func (c *conn) drainLinger() {
	for {
		n, err := unix.Read(c.fd, c.s.rbuf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil || n == 0:
			c.close()
			return
		}
	}
}

func (c *conn) updateInterest() {
	var ev uint32
	if !c.rdClosed && !c.closeAfter {
		busy := c.w != nil || c.outPending()
		if !busy || len(c.in)-c.off < pipelineLimit {
			ev |= unix.EPOLLIN | unix.EPOLLRDHUP
		} else if !c.hup {
			ev |= unix.EPOLLRDHUP // paused, but still notice a hang-up
		}
	}
	if c.outPending() {
		ev |= unix.EPOLLOUT
	}
	c.setEvents(ev)
}

func (c *conn) setEvents(ev uint32) {
	if ev == c.events || c.fd < 0 {
		return
	}
	if err := c.s.loop.Modify(c.fd, ev); err != nil {
		c.s.logError("update interest for "+c.remote, err)
		c.close()
		return
	}
	c.events = ev
}

// armIdle starts the keep-alive clock unless it already runs. One lazy timer
// per connection serves every idle period: it re-arms itself when the
// deadline moved, so the common request/response cycle touches no timer.
func (c *conn) armIdle() {
	if !c.idleDeadline.IsZero() {
		return
	}
	c.idleDeadline = c.s.loop.Now().Add(c.s.cfg.KeepAliveTimeout)
	if c.idleTimer == nil {
		c.idleTimer = c.s.loop.AfterFunc(c.s.cfg.KeepAliveTimeout, c.onIdle)
	}
}

func (c *conn) idleFired() {
	c.idleTimer = nil
	if c.fd < 0 || c.idleDeadline.IsZero() {
		return // busy now; the next idle period arms a new timer
	}
	if d := c.idleDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.idleTimer = c.s.loop.AfterFunc(d, c.onIdle)
		return
	}
	c.close()
}

// armHeaderTimeout starts the header clock unless it already runs; lazy
// like armIdle.
func (c *conn) armHeaderTimeout() {
	if !c.hdrDeadline.IsZero() {
		return
	}
	d := c.s.cfg.RequestHeaderTimeout
	c.hdrDeadline = c.s.loop.Now().Add(d)
	if c.hdrTimer == nil {
		c.hdrTimer = c.s.loop.AfterFunc(d, c.onHeaderTimeout)
	}
}

func (c *conn) headerFired() {
	c.hdrTimer = nil
	if c.fd < 0 || c.hdrDeadline.IsZero() {
		return // the header completed; a later one arms a new timer
	}
	if d := c.hdrDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.hdrTimer = c.s.loop.AfterFunc(d, c.onHeaderTimeout)
		return
	}
	c.hdrDeadline = time.Time{}
	if c.w != nil || c.req != nil || c.closeAfter || c.lingering || c.outPending() {
		return // not waiting on a header any more
	}
	c.fail(http.StatusRequestTimeout, "request header not received in time")
	if c.fd >= 0 {
		c.advance()
	}
}

// close releases the socket now. The connection leaves the server's table
// unless its handler has yet to respond.
func (c *conn) close() {
	s := c.s
	if c.fd >= 0 {
		if err := s.loop.Remove(c.fd); err != nil {
			s.logError("unregister connection", err)
		}
		unix.Close(c.fd)
		c.fd = -1
	}
	if c.idleTimer != nil {
		s.loop.StopTimer(c.idleTimer)
		c.idleTimer = nil
	}
	if c.lingerTimer != nil {
		s.loop.StopTimer(c.lingerTimer)
		c.lingerTimer = nil
	}
	if c.hdrTimer != nil {
		s.loop.StopTimer(c.hdrTimer)
		c.hdrTimer = nil
	}
	c.idleDeadline, c.hdrDeadline = time.Time{}, time.Time{}
	c.in, c.out, c.off, c.outOff, c.wait = nil, nil, 0, 0, false
	c.lingering = false
	if c.w == nil {
		s.forget(c)
	}
}

// decodeChunked decodes a complete chunked body (as found by chunkScanner)
// with net/http's decoder, which stays the authority on what is valid. Its
// trailer fields are merged into req.Trailer.
func (s *Server) decodeChunked(req *http.Request, raw []byte, size int64) ([]byte, error) {
	s.bytesR.Reset(raw)
	s.br.Reset(&s.bytesR)
	body := make([]byte, size)
	cr := httputil.NewChunkedReader(s.br)
	if _, err := io.ReadFull(cr, body); err != nil {
		return nil, fmt.Errorf("chunked body: %w", err)
	}
	var one [1]byte
	if n, err := cr.Read(one[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("malformed chunked encoding")
		}
		return nil, fmt.Errorf("chunked body: %w", err)
	}
	// What follows the last chunk: CRLF alone, or trailer fields ending in
	// an empty line; like net/http, insist on CRLF line ends there.
	trailer := raw[len(raw)-s.br.Buffered()-s.bytesR.Len():]
	switch {
	case string(trailer) == "\r\n":
	case len(trailer) > 4 && bytes.HasSuffix(trailer, []byte("\r\n\r\n")):
		hdr, err := textproto.NewReader(s.br).ReadMIMEHeader()
		if err != nil {
			return nil, fmt.Errorf("chunked trailer: %w", err)
		}
		if s.br.Buffered() != 0 || s.bytesR.Len() != 0 {
			return nil, errors.New("malformed chunked trailer")
		}
		if req.Trailer == nil {
			req.Trailer = make(http.Header, len(hdr))
		}
		for k, v := range hdr {
			req.Trailer[k] = v
		}
	default:
		return nil, errors.New("malformed chunked trailer")
	}
	if len(body) == 0 {
		return nil, nil
	}
	return body, nil
}

// chunkScanner finds where a chunked body ends while its bytes trickle in,
// scanning each byte once; net/http then decodes the complete body in one
// pass. Re-running the decoder on every arrival would cost quadratic time
// against a client that sends one byte at a time.
type chunkScanner struct {
	pos          int   // raw body bytes scanned so far
	state        uint8 // chunkSize, chunkData or chunkTrailer
	left         int64 // chunk data plus its CRLF still to skip
	data         int64 // decoded body bytes announced so far
	trailerStart int
}

const (
	chunkSize = iota
	chunkData
	chunkTrailer
)

// scan continues over body (the raw bytes after the header block). It returns
// the length of the complete chunked body, or -1 if more bytes are needed, or
// an error status with its message.
func (cs *chunkScanner) scan(body []byte, maxBody int64, maxTrailer int) (end, status int, msg string) {
	for {
		if int64(cs.pos) > 2*maxBody+1<<16 {
			// Many tiny chunks or long extensions: bound the raw size too.
			return 0, http.StatusRequestEntityTooLarge, "chunked request body too large"
		}
		switch cs.state {
		case chunkSize:
			i := bytes.IndexByte(body[cs.pos:], '\n')
			if i < 0 {
				if len(body)-cs.pos >= maxChunkLine {
					return 0, http.StatusBadRequest, "chunk size line too long"
				}
				return -1, 0, ""
			}
			line := body[cs.pos : cs.pos+i]
			if len(line) >= maxChunkLine {
				return 0, http.StatusBadRequest, "chunk size line too long"
			}
			if j := bytes.IndexByte(line, ';'); j >= 0 {
				line = line[:j]
			}
			line = bytes.TrimRight(line, " \t\r")
			size, ok := parseChunkSize(line, maxBody-cs.data)
			if !ok {
				if size < 0 {
					return 0, http.StatusRequestEntityTooLarge, "request body too large"
				}
				return 0, http.StatusBadRequest, "invalid chunk size"
			}
			cs.pos += i + 1
			if size == 0 {
				cs.state, cs.trailerStart = chunkTrailer, cs.pos
				continue
			}
			cs.data += size
			cs.left = size + 2
			cs.state = chunkData
		case chunkData:
			avail := int64(len(body) - cs.pos)
			if avail < cs.left {
				cs.pos += int(avail)
				cs.left -= avail
				return -1, 0, ""
			}
			cs.pos += int(cs.left)
			cs.left = 0
			cs.state = chunkSize
		case chunkTrailer:
			i := bytes.IndexByte(body[cs.pos:], '\n')
			if i < 0 {
				if len(body)-cs.trailerStart > maxTrailer {
					return 0, http.StatusRequestHeaderFieldsTooLarge, "chunked trailer too large"
				}
				return -1, 0, ""
			}
			line := body[cs.pos : cs.pos+i]
			cs.pos += i + 1
			if cs.pos-cs.trailerStart > maxTrailer {
				return 0, http.StatusRequestHeaderFieldsTooLarge, "chunked trailer too large"
			}
			if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
				return cs.pos, 0, ""
			}
		}
	}
}

// parseChunkSize parses a hex chunk size. It fails with size -1 when the
// size exceeds limit, and with size 0 when the line is not hex.
func parseChunkSize(line []byte, limit int64) (size int64, ok bool) {
	if len(line) == 0 {
		return 0, false
	}
	for _, b := range line {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'f':
			d = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, false
		}
		size = size<<4 | int64(d)
		if size > limit {
			return -1, false
		}
	}
	return size, true
}
