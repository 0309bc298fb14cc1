package eventloop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	// flushThreshold is how many response bytes a batch of pipelined
	// requests may hold back before they are written anyway.
	flushThreshold = 64 << 10
	// maxRetainedOut is the largest output buffer a connection keeps between
	// responses: every connection has one now (responses are built in it),
	// so it stays small — room for a batch of pipelined answers.
	maxRetainedOut = 16 << 10
)

// ResponseWriter answers exactly one request.
type ResponseWriter struct {
	c      *conn
	req    *Request
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

// OnClientGone registers fn to run, once, on the loop, if the client goes
// away while its request is in flight: it closed or half-closed the
// connection with nothing more asked for, or the connection failed. A
// handler waiting on slow work (an upstream call) cancels it there and
// frees what it holds, as Uvicorn's apps do on http.disconnect and
// net/http's handlers when their request's context is cancelled; it
// still calls Respond, which then only forgets the request. fn never runs
// once the request is answered; it runs soon if the client is already
// gone. A later call replaces fn.
func (w *ResponseWriter) OnClientGone(fn func()) {
	c := w.c
	if w.done || !c.state.inFlight() {
		return
	}
	seq := c.requests // the exchange may be reused once answered
	c.gone = func() {
		if !w.done && c.requests == seq {
			fn()
		}
	}
	if c.fd < 0 || (c.rdClosed && c.off == len(c.in)) {
		c.clientLeft()
	}
}

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
	c.gone = nil
	if c.state == stateAbandoned { // the client is gone: nothing to send, only to forget
		c.setState(stateClosed)
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
		c.setState(stateClosing)
	} else {
		c.setState(stateWriting)
	}
	keepAlive10 := !closing && !w.req.http11
	if !c.dispatching {
		// An async answer: advance below answers what was pipelined behind
		// it and writes everything at once.
		c.batching = true
	}
	c.out = s.appendResponse(c.out, status, contentType, w.header, body,
		w.req.Method == http.MethodHead, closing, keepAlive10)
	c.queued()
	if s.cfg.Trace != nil {
		s.traceResponse(c, w.req, status, len(body))
	}
	s.accessLog(c, w.req.Method, w.req.Target, w.req.Proto, status, w.req.Header)
	if !c.dispatching && c.fd >= 0 {
		c.advance()
	}
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

var continueResponse = []byte("HTTP/1.1 100 Continue\r\n\r\n")

var bodyServiceUnavailable = []byte(`{"detail":"Service Unavailable"}`)

// shed answers 503 instead of running the handler (LimitConcurrency) and
// closes the connection afterwards, as uvicorn does. The request was read
// whole, so there is nothing to linger for unless more is pipelined.
func (c *conn) shed() {
	s := c.s
	r := &c.x.r
	s.shed++
	c.setState(stateClosing)
	c.out = s.appendResponse(c.out, http.StatusServiceUnavailable, "application/json", nil,
		bodyServiceUnavailable, r.Method == http.MethodHead, true, false)
	c.queued()
	s.accessLog(c, r.Method, r.Target, r.Proto, http.StatusServiceUnavailable, r.Header)
}

// fail answers with a JSON error and closes the connection afterwards,
// lingering first: the client may still be sending the rejected request.
func (c *conn) fail(status int, msg string) {
	s := c.s
	var r *Request
	if c.named {
		r = &c.x.r
	}
	c.releaseBody()
	c.setState(stateClosing)
	quoted, _ := json.Marshal(msg) // a string always marshals
	body := make([]byte, 0, len(quoted)+10)
	body = append(append(append(body, `{"error":`...), quoted...), '}')
	c.out = s.appendResponse(c.out, status, "application/json", nil, body, r != nil && r.Method == http.MethodHead, true, false)
	c.queued()
	if r == nil { // refused before its head parsed: log its request line as sent, if it has one
		method, target, proto := requestLine(c.in[c.off:])
		s.accessLog(c, method, target, proto, status, nil)
	} else {
		s.accessLog(c, r.Method, r.Target, r.Proto, status, r.Header)
	}
}

// requestLine reads the method, target and version of a request refused
// before its head was parsed (a transfer coding we do not know, a header
// too large) from its first line, for the access log, as nginx logs them.
// All three are empty unless that line is METHOD SP TARGET SP HTTP/x.y.
func requestLine(in []byte) (method, target, proto string) {
	line, _, ok := bytes.Cut(in, []byte("\n"))
	if !ok {
		return "", "", ""
	}
	parts := strings.Split(string(bytes.TrimSuffix(line, []byte("\r"))), " ")
	if len(parts) != 3 || !validToken(parts[0]) || parts[1] == "" || !validFieldValue(parts[1]) ||
		len(parts[2]) != len("HTTP/1.1") || !strings.HasPrefix(parts[2], "HTTP/") {
		return "", "", ""
	}
	return parts[0], parts[1], parts[2]
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
	if c.state == stateClosing {
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
		n, err := Send(fd, b[done:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return done, nil
		case err != 0:
			return done, err
		}
		done += n
	}
	return done, nil
}
