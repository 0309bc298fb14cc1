package eventloop

import (
	"bytes"
	"net/http"
	"net/url"
)

// The server's own request-head parser: a fast path for the requests
// clients really send, that gives the same Request net/http's ReadRequest
// gives plus its server's checks (framing.go), without allocating on a
// keep-alive connection. It accepts only what it fully understands: a
// request line "METHOD /origin-form-target HTTP/1.x" with single spaces,
// CRLF line ends, field lines "Name: value" with token names and printable
// ASCII values, a valid Host (required in HTTP/1.1), at most one
// Content-Length of digits within the body limit, and a Connection that is
// close or keep-alive. Anything else — obs-fold, bare LF, Transfer-Encoding,
// Expect, Trailer, Pragma, absolute-form, escapes in the path, any field
// the fast path would have to reject — goes to net/http's parser, which
// decides. FuzzServerFraming holds the two to the same answers.

// maxInterned is the longest string the intern table keeps: targets and
// field values longer than this are allocated per request.
const (
	maxInterned     = 64
	maxInternedStrs = 1024
)

// intern returns b as a string, the same string for the same bytes as long
// as the table keeps it, so that a keep-alive client repeating its target
// and fields costs no allocation. The table is bounded (cleared when full,
// entries at most maxInterned bytes): a client sending ever-new values only
// costs the allocations it would cost without it.
//
// In front of the table sit a few slots chosen by length and last byte: a
// keep-alive client sends the same few strings again and again, and one
// comparison of bytes is cheaper than a lookup in the table.
func (s *Server) intern(b []byte) string {
	if len(b) > maxInterned || len(b) == 0 {
		return string(b)
	}
	slot := &s.recent[(len(b)+int(b[len(b)-1]))%len(s.recent)]
	if *slot == string(b) { // the comparison does not allocate
		return *slot
	}
	v, ok := s.strs[string(b)] // nor does the lookup
	if !ok {
		if len(s.strs) >= maxInternedStrs {
			clear(s.strs)
		}
		v = string(b)
		s.strs[v] = v
	}
	*slot = v
	return v
}

// knownField returns the canonical name as a constant string when it is
// one of the fields clients commonly send, so that it needs no table.
func knownField(canon []byte) (string, bool) {
	switch string(canon) { // compiled to a search on length and bytes: no allocation
	case "Host":
		return "Host", true
	case "User-Agent":
		return "User-Agent", true
	case "Accept":
		return "Accept", true
	case "Accept-Encoding":
		return "Accept-Encoding", true
	case "Accept-Language":
		return "Accept-Language", true
	case "Connection":
		return "Connection", true
	case "Content-Length":
		return "Content-Length", true
	case "Content-Type":
		return "Content-Type", true
	case "Cookie":
		return "Cookie", true
	case "Authorization":
		return "Authorization", true
	case "Referer":
		return "Referer", true
	case "Origin":
		return "Origin", true
	case "Cache-Control":
		return "Cache-Control", true
	case "X-Forwarded-For":
		return "X-Forwarded-For", true
	case "X-Forwarded-Proto":
		return "X-Forwarded-Proto", true
	case "X-Request-Id":
		return "X-Request-Id", true
	case "X-Real-Ip":
		return "X-Real-Ip", true
	}
	return "", false
}

// parseFast parses the complete header block at block into x. It reports
// false, with x left for the other parser to fill, when the block is
// anything but the plain form above.
func (c *conn) parseFast(block []byte, x *exchange) bool {
	s := c.s
	r := &x.r
	// Request line.
	line, rest, ok := cutCRLF(block)
	if !ok {
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	method := line[:sp]
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	target, proto := line[:sp], line[sp+1:]
	switch string(proto) {
	case "HTTP/1.1":
		r.Proto, r.http11 = "HTTP/1.1", true
	case "HTTP/1.0":
		r.Proto, r.http11 = "HTTP/1.0", false
	default:
		return false
	}
	if r.Method = methodName(method, s); r.Method == "" {
		return false
	}
	if !x.parseTarget(target, s) {
		return false
	}

	// Field lines.
	hdr := x.hdr
	if hdr == nil {
		hdr = make(http.Header, 8)
		x.hdr = hdr
	} else {
		clear(hdr)
	}
	vals := x.vals[:0]
	var (
		hosts       int
		lengths     int
		length      int64
		connClose   bool
		connKeep    bool
		connections int
	)
	r.Host = ""
	for {
		line, rest, ok = cutCRLF(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false
		}
		name, ok := c.fieldName(line[:colon])
		if !ok {
			return false
		}
		value, ok := trimValue(line[colon+1:])
		if !ok {
			return false
		}
		switch name {
		case "Host":
			if hosts++; hosts > 1 || !validHostBytes(value) {
				return false
			}
			r.Host = s.intern(value)
			continue // ReadRequest takes Host out of the header
		case "Content-Length":
			if lengths++; lengths > 1 {
				return false
			}
			if length, ok = parseLength(value); !ok || length > s.cfg.MaxBodyBytes {
				return false
			}
		case "Connection":
			connections++
			switch {
			case asciiEqualFold(value, "close"):
				connClose = true
			case asciiEqualFold(value, "keep-alive"):
				connKeep = true
			default:
				return false
			}
		case "Transfer-Encoding", "Expect", "Trailer", "Pragma":
			return false // net/http's parser handles these
		}
		v := s.intern(value)
		if old := hdr[name]; old != nil {
			hdr[name] = append(old, v)
			continue
		}
		vals = append(vals, v)
		hdr[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if connections > 1 || (r.http11 && hosts == 0) {
		return false
	}
	x.vals = vals
	r.Header = hdr
	r.Trailer = nil
	// net/http's shouldClose: HTTP/1.1 closes when asked, HTTP/1.0 unless
	// asked to keep alive.
	r.Close = connClose || (!r.http11 && !connKeep)
	c.bodySize, c.chunked, c.expect100 = length, false, false
	return true
}

// parseTarget takes an origin-form target whose URL needs no unescaping:
// a path of unreserved and sub-delim characters ('/', ':', '@' and
// "-._~$&+,;=") and an optional non-empty query of printable ASCII but '#'.
// url.ParseRequestURI gives exactly Path and RawQuery for those.
func (x *exchange) parseTarget(target []byte, s *Server) bool {
	if len(target) == 0 || target[0] != '/' || (len(target) > 1 && target[1] == '/') {
		return false
	}
	q := bytes.IndexByte(target, '?')
	path := target
	if q >= 0 {
		path = target[:q]
		query := target[q+1:]
		if len(query) == 0 {
			return false // "/p?" sets ForceQuery
		}
		for _, b := range query {
			if b <= ' ' || b >= 0x7f || b == '#' {
				return false
			}
		}
	}
	for _, b := range path {
		if !isPathByte(b) {
			return false
		}
	}
	r := &x.r
	r.Target = s.intern(target)
	x.url = url.URL{Path: r.Target[:len(path)]}
	if q >= 0 {
		x.url.RawQuery = r.Target[q+1:]
	}
	r.URL = &x.url
	return true
}

func isPathByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '/', '-', '.', '_', '~', '$', '&', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

// methodName returns the method as a string, or "" if the fast path does
// not take it: an upper-case token, CONNECT aside (its target is an
// authority).
func methodName(m []byte, s *Server) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodOptions:
		return http.MethodOptions
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodConnect:
		return ""
	}
	if len(m) > 20 {
		return ""
	}
	for _, b := range m {
		if b < 'A' || b > 'Z' {
			return ""
		}
	}
	return s.intern(m)
}

// fieldName canonicalizes a token field name the way net/textproto does
// (upper case first and after each '-', lower case elsewhere), as a string
// that costs no allocation when it is a known or recent name.
func (c *conn) fieldName(name []byte) (string, bool) {
	var buf [maxInterned]byte
	if len(name) > len(buf) {
		return "", false
	}
	canon := buf[:len(name)]
	upper := true
	for i, b := range name {
		if !isTokenByte(b) {
			return "", false
		}
		switch {
		case upper && 'a' <= b && b <= 'z':
			b -= 'a' - 'A'
		case !upper && 'A' <= b && b <= 'Z':
			b += 'a' - 'A'
		}
		canon[i] = b
		upper = b == '-'
	}
	if known, ok := knownField(canon); ok {
		return known, true
	}
	return c.s.intern(canon), true
}

// trimValue checks a field value's bytes (printable ASCII and HTAB; the
// fast path leaves obs-text to net/http) and trims the optional whitespace
// around it.
func trimValue(v []byte) ([]byte, bool) {
	for _, b := range v {
		if (b < ' ' && b != '\t') || b >= 0x7f {
			return nil, false
		}
	}
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v, true
}

// cutCRLF cuts the first line off b. ok is false unless it ends in CRLF
// with no other CR in it.
func cutCRLF(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// parseLength parses a Content-Length of 1 to 18 digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, b := range v {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

func validHostBytes(h []byte) bool {
	for _, b := range h {
		if !isHostByte(b) {
			return false
		}
	}
	return true
}

// asciiEqualFold reports whether b is s in any case (s is lower case).
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
