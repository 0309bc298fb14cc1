package eventloop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// pipelineLimit bounds what a connection buffers while it is busy with
	// a request: past it the loop stops reading until the response is out,
	// so a client that pipelines without reading cannot grow memory.
	pipelineLimit = 64 << 10
	// flushThreshold is how many response bytes a batch of pipelined
	// requests may hold back before they are written anyway.
	flushThreshold = 64 << 10
	// maxRetained is the largest per-connection input buffer kept for reuse.
	maxRetained = 64 << 10
	// maxRetainedOut is the largest output buffer a connection keeps between
	// responses: every connection has one now (responses are built in it),
	// so it stays small — room for a batch of pipelined answers.
	maxRetainedOut = 16 << 10
)

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
