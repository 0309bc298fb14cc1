package eventloop

import (
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
)

// The reference parser: net/http's ReadRequest, plus the checks net/http's
// server makes on top of it, plus the RFC 9112 rules where net/http is
// laxer. It parses whatever the server's own parser (parse.go) leaves, and
// every request with ServerConfig.NetHTTPParser.

// parseNetHTTP parses the complete header block at block into x and the
// connection's body framing, or returns the status to refuse it with.
func (c *conn) parseNetHTTP(block []byte, x *exchange) (int, string) {
	s := c.s
	s.bytesR.Reset(block)
	s.br.Reset(&s.bytesR)
	req, err := http.ReadRequest(s.br)
	if err != nil {
		return readRequestStatus(err), err.Error()
	}
	x.r.fromNetHTTP(req)
	c.named = true
	status, msg := c.checkHeader(req, block)
	x.r.Close = req.Close
	c.chunked = len(req.TransferEncoding) > 0 // net/http accepts "chunked" only
	c.bodySize = max(req.ContentLength, 0)
	c.expect100 = req.ProtoAtLeast(1, 1) && hasToken(req.Header.Get("Expect"), "100-continue")
	return status, msg
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
	// RFC 9112 §6.1: with both Transfer-Encoding and Content-Length, the
	// server may refuse the request or read it by Transfer-Encoding alone,
	// but either way MUST close the connection after answering; an
	// HTTP/1.0 message with Transfer-Encoding has faulty framing and is
	// closed after too. We answer (as net/http's server does, which keeps
	// the differential rule: refuse what it refuses) and close: whatever
	// follows the body is never read as a request, which is what a
	// smuggling attempt needs. (nginx refuses both with 400 instead.)
	_, te := fields["Transfer-Encoding"]
	_, cl := fields["Content-Length"]
	if te && (cl || !req.ProtoAtLeast(1, 1)) {
		req.Close = true
	}
	if req.ContentLength > c.s.cfg.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, "request body too large"
	}
	// Like net/http's server, the first Expect field decides: 100-continue
	// is honoured, any other expectation gets 417 (RFC 9110 §10.1.1).
	if e := req.Header.Get("Expect"); e != "" && !hasToken(e, "100-continue") {
		return http.StatusExpectationFailed, "unsupported Expect header"
	}
	// net/http's server also closes when the first Connection field names
	// close among other words ("x close"), which ReadRequest's list
	// parsing does not count.
	if hasToken(req.Header.Get("Connection"), "close") {
		req.Close = true
	}
	return 0, ""
}

// readRequestStatus is the status for a request ReadRequest refused: 501
// for a transfer coding it does not implement (RFC 9112 §6.1: a server
// SHOULD answer 501; net/http's server does), else 400.
func readRequestStatus(err error) int {
	// net/http's error type for it is unexported; its messages are not.
	if msg := err.Error(); strings.HasPrefix(msg, "unsupported transfer encoding") ||
		strings.HasPrefix(msg, "too many transfer encodings") {
		return http.StatusNotImplemented
	}
	return http.StatusBadRequest
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

// hasToken reports whether token appears in v, in any case, between
// boundaries (the ends of v, space, tab or comma): how net/http's server
// reads Expect and Connection.
func hasToken(v, token string) bool {
	for i := 0; i+len(token) <= len(v); i++ {
		if (i == 0 || isTokenBoundary(v[i-1])) &&
			(i+len(token) == len(v) || isTokenBoundary(v[i+len(token)])) &&
			strings.EqualFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == '\t' || b == ',' }

// validHost reports whether h uses only bytes that may appear in a URI's
// host and port (RFC 3986 §3.2.2: unreserved, sub-delims, pct-encoded, ':'
// and the brackets of an IP literal), the leniency net/http's server
// applies: "a b" and "a/b" are refused.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !isHostByte(h[i]) {
			return false
		}
	}
	return true
}

func isHostByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=%:[]", b) >= 0
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
