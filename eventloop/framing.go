package eventloop

import (
	"bytes"
	"net/http"
)

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

// sendContinue sends the interim 100 once, when a client that asked for it
// has sent its header but not yet its body.
func (c *conn) sendContinue() {
	if c.continued || !c.expect100 {
		return
	}
	c.continued = true
	c.output(continueResponse)
}

// step makes progress on the message at in[off:]. It reports true when it
// dispatched a request or answered with an error, false when it needs more
// bytes.
func (c *conn) step() bool {
	s := c.s
	if !c.parsed {
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
		c.parsed, c.hdrLen = true, end
		if status, msg := c.parseHead(buf[:end]); status != 0 {
			c.fail(status, msg)
			return true
		}
	}

	rest := c.in[c.off+c.hdrLen:]
	var bodyLen int
	switch {
	case c.chunked:
		end, status, msg := c.chunks.scan(rest, s.cfg.MaxBodyBytes, s.cfg.MaxHeaderBytes)
		if status != 0 {
			c.fail(status, msg)
			return true
		}
		if end < 0 {
			return c.awaitBody(len(rest))
		}
		bodyLen = end
	case c.bodySize > 0:
		if int64(len(rest)) < c.bodySize {
			// The buffer is made to hold the whole body (reserve): that,
			// not what arrived so far, is what the worker's memory gives
			// it, and what counts against MaxBufferedBodyBytes.
			if c.awaitBody(int(c.bodySize)) {
				return true
			}
			c.reserve(c.hdrLen + int(c.bodySize))
			return false
		}
		bodyLen = int(c.bodySize)
	}

	var body []byte
	if c.chunked {
		var err error
		if body, err = s.decodeChunked(&c.x.r, rest[:bodyLen], c.chunks.data); err != nil {
			c.fail(http.StatusBadRequest, err.Error())
			return true
		}
	} else if bodyLen > 0 {
		body = bytes.Clone(rest[:bodyLen])
	}
	c.consume(c.hdrLen + bodyLen)
	c.dispatch(body)
	return true
}

// parseHead parses a complete header block into the connection's exchange
// (a new one unless the last can be reused) and the body's framing: with
// the server's own parser, or net/http's for what it leaves. It returns the
// status to refuse the request with, or 0.
func (c *conn) parseHead(block []byte) (int, string) {
	if c.x == nil {
		c.x = new(exchange)
	}
	if !c.s.cfg.NetHTTPParser && c.parseFast(block, c.x) {
		c.named = true
		return 0, ""
	}
	return c.parseNetHTTP(block, c.x)
}

// awaitBody notes that the request's body holds held bytes of the
// worker's memory (received so far, or the buffer made for all of it), and
// asks for the rest (100 Continue) unless that would take the server's
// buffered bodies past MaxBufferedBodyBytes: then the request gets 503. It
// reports what step reports.
func (c *conn) awaitBody(held int) bool {
	s := c.s
	if s.bodyBytes-c.bodyHeld+int64(held) > s.cfg.MaxBufferedBodyBytes {
		c.releaseBody()
		c.fail(http.StatusServiceUnavailable, "too many request bodies in progress; try again later")
		return true
	}
	s.bodyBytes += int64(held) - c.bodyHeld
	c.bodyHeld = int64(held)
	c.sendContinue()
	return false
}

// reserve makes room for the message at in[off:] to reach n bytes without
// the buffer growing by doubling: the memory a body takes is then what it
// holds, which is what MaxBufferedBodyBytes counts.
func (c *conn) reserve(n int) {
	if cap(c.in)-c.off >= n {
		return
	}
	in := make([]byte, len(c.in)-c.off, n)
	copy(in, c.in[c.off:])
	c.in, c.off = in, 0
}

// releaseBody stops counting what the connection's body holds: it was
// dispatched, refused or dropped.
func (c *conn) releaseBody() {
	c.s.bodyBytes -= c.bodyHeld
	c.bodyHeld = 0
}

// consume drops one parsed message from the buffer and resets parse state.
func (c *conn) consume(n int) {
	c.releaseBody()
	c.off += n
	c.begun = c.off < len(c.in) // a pipelined request
	c.scan, c.parsed, c.named, c.hdrLen, c.chunks, c.continued = 0, false, false, 0, chunkScanner{}, false
	if c.off == len(c.in) {
		c.off = 0
		c.in = c.in[:0]
		if cap(c.in) > maxRetained {
			c.in = nil
		}
	}
}
