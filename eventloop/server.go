package eventloop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	defaultMaxHeaderBytes   = 16 << 10
	defaultMaxBodyBytes     = 1 << 20
	defaultKeepAliveTimeout = 5 * time.Second
	defaultHeaderTimeout    = 10 * time.Second
	defaultBodyTimeout      = 30 * time.Second
	defaultMaxBufferedBody  = 64 << 20
	defaultAcceptBatch      = 100 // asyncio's backlog for _accept_connection

	// readSize is how much one read(2) may bring in.
	readSize = 64 << 10
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
	// RequestBodyTimeout (default 30s) bounds how long a request's body may
	// take from the end of its header. Past it the client gets 408 and the
	// connection closes: each byte restarts the keep-alive clock, so a body
	// dripped a byte at a time would otherwise hold its connection, and its
	// buffer, for ever.
	RequestBodyTimeout time.Duration
	// MaxBufferedBodyBytes (default 64 MiB) bounds the request bodies
	// being received, summed over every connection: a request whose body
	// would take the sum past it gets 503 and its connection closes, so
	// clients holding incomplete bodies cannot grow a worker without
	// bound (MaxBodyBytes bounds each one alone).
	MaxBufferedBodyBytes int64
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
	// NetHTTPParser parses every request with net/http's ReadRequest (and
	// the checks its server adds), the reference the server's own parser
	// is tested against, instead of only what the server's parser leaves
	// to it. Slower; for comparisons.
	NetHTTPParser bool
	// AccessLog, if set, is called on the loop after each response is
	// queued. For requests rejected before their header parsed, method,
	// target and proto are empty and header is nil. header is the
	// request's: the caller may read it (X-Forwarded-For) but not keep it.
	AccessLog func(remoteAddr, method, target, proto string, status int, header http.Header)
	// ErrorLog, if set, receives unexpected socket errors and handler
	// panics; misbehaving clients are not reported here.
	ErrorLog func(msg string, err error)
	// Trace, if set, is called on the loop at each step of TraceKind:
	// connections made and lost, requests handed to the handler and
	// their responses. Requests refused before the handler (400, 503)
	// have no steps, as in Uvicorn.
	Trace func(TraceEvent)
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
	if c.RequestBodyTimeout <= 0 {
		c.RequestBodyTimeout = defaultBodyTimeout
	}
	if c.MaxBufferedBodyBytes <= 0 {
		c.MaxBufferedBodyBytes = defaultMaxBufferedBody
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

// Handler serves a request on the loop goroutine. It may respond before it
// returns or later, from any loop callback (timer, Post, client completion).
// Like net/http's handlers once they return, it must not use w or r (or
// r's header maps) after it has both responded and returned: the server
// reuses them for the connection's next request, which is what makes a
// keep-alive request free of allocations. r.Body is the handler's to keep.
type Handler func(w *ResponseWriter, r *Request)

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
	// BodyBytes is what incomplete request bodies hold in buffers now
	// (bounded by MaxBufferedBodyBytes).
	BodyBytes int64
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
	// Accept failures since the last success: counted, logged once and
	// summed up when accepting works again.
	acceptFailures int
	acceptFailedAt time.Time
	acceptErr      error
	shutting       bool
	doneFns        []func()
	inFlight       int
	requests       uint64
	shed           uint64
	bodyBytes      int64 // held by incomplete request bodies (conn.bodyHeld summed)

	// Scratch shared by all connections: only the loop goroutine runs.
	rbuf    []byte        // read(2) target
	br      *bufio.Reader // over bytesR, to hand blocks to net/http parsers
	bytesR  bytes.Reader
	dateSec int64
	date    []byte
	strs    map[string]string // interned targets and field values (parse.go)
	recent  [8]string         // the table's strings used last, by length and last byte
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
	// Like asyncio, disable Nagle: small responses must not wait for ACKs.
	// Set on the listener, since Linux copies it into every connection
	// accepted from it: one system call here instead of one per
	// connection. It fails harmlessly on a unix socket.
	_ = unix.SetsockoptInt(listenFD, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	s := &Server{
		loop:    l,
		lfd:     listenFD,
		cfg:     cfg,
		handler: h,
		conns:   make(map[*conn]struct{}),
		rbuf:    make([]byte, readSize),
		strs:    make(map[string]string),
	}
	s.br = newScratchReader(&s.bytesR)
	if err := s.register(); err != nil {
		return nil, fmt.Errorf("register listener: %w", err)
	}
	s.listening = true
	return s, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{Conns: len(s.conns), InFlight: s.inFlight, Requests: s.requests, Shed: s.shed, BodyBytes: s.bodyBytes}
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
			case c.state == stateWriting:
				c.setState(stateClosing)
			case c.state.waiting():
				// A request may already sit in the socket, its readiness
				// event not handled yet: read it rather than close under
				// it.
				c.read()
				if c.fd >= 0 {
					c.advance()
				}
			default:
				// In flight, closing or lingering: finishes on its own,
				// then closes.
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
// MaxSharedListeners is how many loops, of every process, can wait on one
// listening socket at once unless EpollExclusive: register puts it in the
// loop's urgent set, which is nested in the main one, and Linux allows 500
// wake-up paths through nested epoll sets to one file (fs/eventpoll.c,
// path_limits); the next registration fails with EINVAL. EpollExclusive
// registers it in the main set, which no such check limits.
const MaxSharedListeners = 500

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
		// The standard library's accept4, not x/sys/unix's: that one asks
		// the listener for its protocol (getsockopt SO_PROTOCOL) after
		// every IPv4 or IPv6 accept, to tell an L2TP peer apart — one more
		// system call per connection that a TCP server never needs.
		fd, sa, err := syscall.Accept4(s.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
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
		if s.acceptFailures > 0 {
			s.logError("accepting again", fmt.Errorf("accept failed %d times over %v: %w",
				s.acceptFailures, s.loop.Now().Sub(s.acceptFailedAt).Round(time.Millisecond), s.acceptErr))
			s.acceptFailures, s.acceptErr = 0, nil
		}
		s.newConn(fd, sa)
	}
}

// pauseAccepting steps back from a listener that fails (at the descriptor
// limit, typically). The first failure is logged; the others are counted,
// and summed up once accepting works again, so a worker at its limit does
// not log a line every retry.
func (s *Server) pauseAccepting(err error) {
	if s.acceptFailures == 0 {
		s.acceptFailedAt, s.acceptErr = s.loop.Now(), err
		s.logError("accept failed; pausing new connections, retrying every "+acceptRetryDelay.String(), err)
	}
	s.acceptFailures++
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

func (s *Server) newConn(fd int, sa syscall.Sockaddr) {
	c := &conn{s: s, fd: fd, remote: sockaddrString(sa), events: unix.EPOLLIN | unix.EPOLLRDHUP}
	c.idle.onTimer = c.idleFired
	c.header.onTimer = c.headerFired
	c.body.onTimer = c.bodyFired
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
	c.setState(stateNew)
	if s.cfg.Trace != nil {
		s.cfg.Trace(TraceEvent{Kind: TraceConnMade, Remote: c.remote})
	}
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

func (s *Server) accessLog(c *conn, method, target, proto string, status int, header http.Header) {
	if s.cfg.AccessLog != nil {
		s.cfg.AccessLog(c.remote, method, target, proto, status, header)
	}
}

// newScratchReader is the reader net/http's parsers read a block through:
// its size is net/http's server's, which bounds a chunk-size line.
func newScratchReader(r *bytes.Reader) *bufio.Reader { return bufio.NewReaderSize(r, maxChunkLine) }

func sockaddrString(sa syscall.Sockaddr) string {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	case *syscall.SockaddrUnix:
		// A unix-socket client is almost always unnamed (Go shows that
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
