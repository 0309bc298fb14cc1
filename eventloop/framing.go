package eventloop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
)

// maxChunkLine matches net/http's limit on a chunk-size line.
const maxChunkLine = 4096

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
// ReadRequest (conn.readRequest in net/http/server.go). block is the header
// block req was parsed from. It returns a status and message to reject
// with, or 0.
func (c *conn) checkHeader(req *http.Request, block []byte) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported HTTP version " + req.Proto
	}
	fields, err := c.s.fieldsAsSent(block)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	// RFC 9110 §5.1 and RFC 9112 §5.1: a field name is a token, and no
	// whitespace is allowed between it and the colon ("Content-Length : 5"
	// would otherwise be a different field, and its body a second request).
	// Values carry no control characters but HTAB.
	for k, vv := range fields {
		if !validToken(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host, whatever
	// the form of its target; an empty one is valid (no authority).
	hosts := fields["Host"]
	if req.ProtoAtLeast(1, 1) && len(hosts) == 0 && req.Method != http.MethodConnect {
		return http.StatusBadRequest, "missing required Host header"
	}
	if len(hosts) == 1 && !validHost(hosts[0]) {
		return http.StatusBadRequest, "malformed Host header"
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

// fieldsAsSent parses the field lines of a header block again: ReadRequest
// takes Host, Transfer-Encoding and sometimes Content-Length out of the
// header it returns, and the checks need them as the client sent them.
func (s *Server) fieldsAsSent(block []byte) (textproto.MIMEHeader, error) {
	s.bytesR.Reset(block[bytes.IndexByte(block, '\n')+1:])
	s.br.Reset(&s.bytesR)
	return textproto.NewReader(s.br).ReadMIMEHeader()
}

// validToken reports whether s is a token (RFC 9110 §5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// validHost reports whether h uses only bytes that may appear in a URI's
// host and port (RFC 3986 §3.2.2: unreserved, sub-delims, pct-encoded, ':'
// and the brackets of an IP literal), the leniency net/http's server
// applies: "a b" and "a/b" are refused.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		switch b := h[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=%:[]", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldValue reports whether v has no control character but HTAB
// (RFC 9110 §5.5; obs-text, bytes 0x80 and up, is allowed).
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
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
