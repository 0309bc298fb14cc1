package eventloop

import (
	"fmt"
	"net/http"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

const (
	// pipelineLimit bounds what a connection buffers while it is busy with
	// a request: past it the loop stops reading until the response is out,
	// so a client that pipelines without reading cannot grow memory.
	pipelineLimit = 64 << 10
	// maxRetained is the largest per-connection input buffer kept for reuse.
	maxRetained = 64 << 10
)

// connState is where a connection is in its life, the way net/http's
// ConnState tells it. Every change goes through setState, which is also
// the one place that counts requests in flight and starts and stops the
// connection's clocks (deadlines.go). Allowed transitions:
//
//	(accepted)                  → New
//	New, Idle                   → Header, Body  bytes of a request arrived, not all of it
//	Header                      → Body          the header block is complete, the body is not
//	New, Idle, Header, Body     → Active        the request is complete: the handler has it
//	Writing                     → Active        a pipelined request, earlier answers still queued
//	Active                      → Writing       Respond, keeping the connection
//	Active                      → Closing       Respond, closing after it
//	Active                      → Abandoned     the client went away while the handler runs (OnClientGone fires;
//	                                            it also fires on the client's EOF in Active, nothing more asked)
//	Writing                     → Idle, Header, Body  every answer is written: wait for the client
//	New, Idle, Header, Body     → Writing       a 100 Continue waits for the socket
//	New, Idle, Header, Body, Writing → Closing  an error answer, a 503 shed, or Shutdown
//	Closing                     → Lingering     the last answer is out, input is left unread
//	Abandoned                   → Closed        the handler responded: there is no one to tell
//	any but Active, Abandoned   → Closed        a hang-up, an I/O error, a timeout, or Close
//
// The waiting states (New, Idle, Header, Body) are decided when advance
// has answered what it could; in between, within one loop callback, the
// state may lag what the input buffer already holds.
type connState uint8

const (
	// stateClosed is the zero value: the socket is not in the loop (yet,
	// or any more) and the connection is not in the server's table.
	stateClosed connState = iota
	// stateNew: accepted, no request yet. The keep-alive clock runs; a
	// shutdown leaves it that time to send its first request, since its
	// client has nothing to retry.
	stateNew
	// stateIdle: kept alive between requests, nothing of the next one
	// here. The keep-alive clock runs; a shutdown closes it.
	stateIdle
	// stateHeader: part of a request's header block is here. Each byte
	// restarts the keep-alive clock; the header clock runs from the first
	// wait and is not restarted, so a slow drip cannot hold it.
	stateHeader
	// stateBody: the header block is parsed and checked, the body is
	// arriving. The keep-alive clock runs, and the body clock, from the
	// end of the header and not restarted by arriving bytes.
	stateBody
	// stateActive: the handler has the request and the server counts it
	// in flight. No clock: a handler takes as long as it takes.
	stateActive
	// stateWriting: answered and kept alive, and the answers queued are
	// being written: held back while a batch of pipelined requests is
	// answered, or waiting for the socket to take more (EPOLLOUT).
	stateWriting
	// stateClosing: the last answer is queued; once it is written the
	// connection lingers or closes.
	stateClosing
	// stateLingering: the write side is shut and input is read and
	// dropped until EOF or lingerTimeout. Closing with unread input would
	// send RST, which can destroy the answer before the client reads it.
	stateLingering
	// stateAbandoned: the socket is closed but the handler still has the
	// request: the connection stays in the server's table, counted in
	// flight, until the handler responds.
	stateAbandoned
)

var connStateNames = [...]string{"closed", "new", "idle", "header", "body", "active", "writing", "closing", "lingering", "abandoned"}

func (st connState) String() string { return connStateNames[st] }

// waiting reports whether the connection waits for the client's next
// request, with the keep-alive clock running.
func (st connState) waiting() bool { return st >= stateNew && st <= stateBody }

// inFlight reports whether a handler has the connection's request.
func (st connState) inFlight() bool { return st == stateActive || st == stateAbandoned }

// takesRequests reports whether the connection may parse and dispatch its
// next request: it is open, not closing, and no request is in flight.
func (st connState) takesRequests() bool { return st.waiting() || st == stateWriting }

// connTransitions lists, per state, the states it may move to: the table
// above, checked by setState.
var connTransitions = [...]uint16{
	stateClosed:    bit(stateNew),
	stateNew:       bit(stateHeader, stateBody, stateActive, stateWriting, stateClosing, stateClosed),
	stateIdle:      bit(stateHeader, stateBody, stateActive, stateWriting, stateClosing, stateClosed),
	stateHeader:    bit(stateBody, stateActive, stateWriting, stateClosing, stateClosed),
	stateBody:      bit(stateActive, stateWriting, stateClosing, stateClosed),
	stateActive:    bit(stateWriting, stateClosing, stateAbandoned),
	stateWriting:   bit(stateActive, stateIdle, stateHeader, stateBody, stateClosing, stateClosed),
	stateClosing:   bit(stateLingering, stateClosed),
	stateLingering: bit(stateClosed),
	stateAbandoned: bit(stateClosed),
}

func bit(states ...connState) uint16 {
	var b uint16
	for _, st := range states {
		b |= 1 << st
	}
	return b
}

// setState moves c to next. Entering and leaving the states is what keeps
// the server's in-flight count and the connection's clocks right, so
// nothing else touches them.
func (c *conn) setState(next connState) {
	prev := c.state
	if next == prev {
		return
	}
	s := c.s
	if connTransitions[prev]&(1<<next) == 0 {
		s.logError("connection state", fmt.Errorf("%s → %s is not a transition (bug)", prev, next))
	}
	c.state = next
	switch {
	case next.inFlight() && !prev.inFlight():
		s.inFlight++
		s.requests++
	case prev.inFlight() && !next.inFlight():
		s.inFlight--
	}
	switch {
	case next.waiting() && !prev.waiting():
		c.startIdleClock()
	case prev.waiting() && !next.waiting():
		c.stopIdleClock()
	}
	switch {
	case next == stateHeader:
		c.startHeaderClock()
	case prev == stateHeader:
		c.stopHeaderClock()
	}
	// The body clock runs from the end of the header until the request is
	// dispatched or refused; waiting for the socket to take a 100 Continue
	// (Writing) does not stop it.
	switch {
	case next == stateBody:
		c.startBodyClock()
	case next != stateWriting:
		c.stopBodyClock()
	}
	switch next {
	case stateLingering:
		c.startLingerClock()
	case stateClosed, stateAbandoned:
		c.stopClocks()
	}
	if next == stateClosed {
		s.forget(c)
	}
}

// conn is one accepted connection, driven on the loop through the states
// of connState.
type conn struct {
	s      *Server
	fd     int // -1 once closed
	remote string
	events uint32 // the epoll interest currently registered
	state  connState

	in  []byte // bytes read; the unconsumed ones start at off
	off int

	// Parse state of the message at in[off:]; offsets are relative to off.
	scan   int  // where the search for the header block's end resumes
	parsed bool // the header block is parsed, into x; its body may be awaited
	// named: the request's method and target are known (in x.r), for the
	// access log line of a refusal.
	named     bool
	hdrLen    int
	bodySize  int64 // Content-Length, if not chunked
	chunked   bool
	expect100 bool // the client waits for 100 Continue before its body
	chunks    chunkScanner
	continued bool // 100 Continue was sent
	// x is the exchange the next request is parsed into: the last one's,
	// if its handler answered before returning, else nil (a new one).
	x *exchange
	// begun: bytes of the next request arrived (blank lines before it
	// included) and it is not dispatched yet. It is what the buffer holds,
	// not where the connection is: the state becomes stateHeader once the
	// connection waits on them.
	begun    bool
	requests int // requests dispatched (or shed) on this connection

	out    []byte // response bytes not written yet, from outOff
	outOff int

	// These flags are not states: each says something that holds across
	// several of them (flow control of one direction of the socket, what
	// the peer did, where the code is), so folding them into connState
	// would multiply its states, not explain them.
	// batching: answers are held back while advance answers a batch of
	// pipelined requests, to be written with one write(2).
	batching bool
	// wait: the socket refused bytes; EPOLLOUT will tell when it takes more.
	wait bool
	// rdClosed: read returned EOF, the peer hung up its sending side.
	rdClosed bool
	// hup: EPOLLRDHUP seen while reading was paused at pipelineLimit.
	hup bool
	// urgent: registered in the loop's urgent set until its first request.
	urgent bool
	// gone: what the handler of the request in flight asked to run if its
	// client goes away (ResponseWriter.OnClientGone), or nil.
	gone func()
	// dispatching: the handler is on the stack, so Respond leaves writing
	// to advance, which called it.
	dispatching bool

	// The clocks (deadlines.go); setState starts and stops them.
	idle        lazyClock // runs while waiting for the client
	header      lazyClock // runs in stateHeader
	body        lazyClock // runs while a body is awaited
	lingerTimer *Timer

	// bodyHeld is what this connection's incomplete request body holds in
	// its buffer, counted in the server's bodyBytes.
	bodyHeld int64
}

func (c *conn) outPending() bool { return c.outOff < len(c.out) }

func (c *conn) handle(ev uint32) {
	if c.state == stateLingering {
		c.drainLinger()
		return
	}
	if ev&unix.EPOLLOUT != 0 && c.outPending() {
		c.flush()
		if c.fd < 0 || c.state == stateLingering {
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
	n, err := Recv(c.fd, c.s.rbuf)
	for err == unix.EINTR {
		n, err = Recv(c.fd, c.s.rbuf)
	}
	switch {
	case err == unix.EAGAIN:
		return
	case err != 0:
		if !isPeerError(err) {
			c.s.logError("read from "+c.remote, err)
		}
		c.close()
		return
	case n == 0:
		c.rdClosed = true
		if c.off == len(c.in) {
			// Nothing more is asked for: the client is gone (a half-close
			// with pipelined requests still to answer is not).
			c.clientLeft()
		}
		return
	}
	if c.off > 0 { // make room at the front rather than grow
		c.in = c.in[:copy(c.in, c.in[c.off:])]
		c.off = 0
	}
	c.in = append(c.in, c.s.rbuf[:n]...)
	c.bytesArrived()
	if !c.parsed {
		c.begun = true // consume corrects it when these are a body's bytes
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
	for c.state.takesRequests() && !c.wait {
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
	switch {
	case !c.state.takesRequests():
		// In flight, closing, lingering or closed: not waiting for the
		// client.
		if c.fd < 0 || c.state == stateLingering {
			return
		}
	case c.outPending():
		c.setState(stateWriting)
	default:
		next := c.waitingState()
		if c.rdClosed || (s.shutting && next == stateIdle) {
			// Nothing more will come, or nothing more is wanted: shutting
			// down, an idle keep-alive connection goes (see Shutdown).
			c.close()
			return
		}
		c.setState(next)
	}
	c.updateInterest()
}

// waitingState is what the connection waits for when it waits for the
// client, from what its buffer holds.
func (c *conn) waitingState() connState {
	switch {
	case c.parsed:
		return stateBody
	case c.begun:
		return stateHeader
	case c.requests == 0:
		return stateNew
	}
	return stateIdle
}

func (c *conn) dispatch(body []byte) {
	s := c.s
	x := c.x
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
		c.shed()
		return
	}
	x.r.Body, x.r.RemoteAddr = body, c.remote
	hdr := x.w.header
	if len(hdr) > 0 {
		clear(hdr)
	}
	x.w = ResponseWriter{c: c, req: &x.r, header: hdr}
	w := &x.w
	c.gone = nil
	c.setState(stateActive)
	c.dispatching = true
	defer func() {
		if p := recover(); p != nil {
			// Like Uvicorn with an app exception: 500, keep serving.
			s.logError("handler panic serving "+x.r.Target, fmt.Errorf("%v\n%s", p, debug.Stack()))
			if !w.done {
				w.req.Close = true
				w.Respond(http.StatusInternalServerError, "application/json", []byte(`{"error":"internal server error"}`))
			}
		}
		c.dispatching = false
		if !w.done {
			// The handler answers later: the exchange is its own until
			// then, and the next request gets a new one.
			c.x = nil
		}
	}()
	if s.cfg.Trace != nil {
		s.cfg.Trace(TraceEvent{Kind: TraceRequest, Remote: c.remote, N: c.requests, Request: &x.r})
	}
	s.handler(w, &x.r)
}

// clientLeft runs, once and later on the loop, what the handler of the
// request in flight registered with OnClientGone.
func (c *conn) clientLeft() {
	if fn := c.gone; fn != nil && c.state.inFlight() {
		c.gone = nil
		c.s.loop.Post(fn)
	}
}

// finish closes a connection whose last response is written, lingering
// first unless the client has hung up: it may still be sending — a request
// we refused, requests pipelined behind the last answer, or bytes already
// on their way that we have not seen yet. Input that arrives after close(2),
// like input left unread, makes the kernel send RST, which can destroy the
// answer before the client reads it.
func (c *conn) finish() {
	if !c.rdClosed {
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
	c.setState(stateLingering)
	c.releaseBody()
	c.in, c.off = nil, 0
	c.setEvents(unix.EPOLLIN | unix.EPOLLRDHUP)
}

// drainLinger reads and drops what is available; EOF or an error ends the
// linger.
func (c *conn) drainLinger() {
	for {
		n, err := Recv(c.fd, c.s.rbuf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err != 0 || n == 0:
			c.close()
			return
		}
	}
}

func (c *conn) updateInterest() {
	var ev uint32
	if !c.rdClosed && c.state != stateClosing {
		busy := c.state == stateActive || c.outPending()
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

// close releases the socket now. The connection leaves the server's table
// unless its handler has yet to respond.
func (c *conn) close() {
	s := c.s
	if c.fd >= 0 {
		_ = s.loop.Discard(c.fd) // a failed close still frees the fd
		c.fd = -1
		if s.cfg.Trace != nil {
			s.cfg.Trace(TraceEvent{Kind: TraceConnLost, Remote: c.remote})
		}
	}
	c.releaseBody()
	c.in, c.out, c.off, c.outOff, c.wait = nil, nil, 0, 0, false
	switch c.state {
	case stateActive:
		c.setState(stateAbandoned)
		c.clientLeft()
	case stateAbandoned, stateClosed:
	default:
		c.setState(stateClosed)
	}
}
