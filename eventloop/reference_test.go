package eventloop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// The reference the server's framing is held to: net/http's ReadRequest
// plus the rules net/http's server adds on top of it (conn.readRequest and
// conn.serve in net/http/server.go: the Host and field checks, Expect, 501
// for an unknown transfer coding), reading a byte stream the way a server
// reads its socket, with this server's own documented limits (431, 413)
// and the deliberate differences below. It is written from net/http's
// behaviour and the RFCs, sharing no code with the server, and
// TestReferenceMatchesNetHTTPServer checks it against a real net/http
// server on every seed.
//
// Deliberate differences from net/http's server, each an RFC 9112 rule:
//   - Empty lines before a request-line are skipped before every request
//     (§2.2: a server SHOULD ignore at least one); net/http skips them
//     only after a POST.
//   - A request with both Transfer-Encoding and Content-Length, or with
//     Transfer-Encoding on HTTP/1.0, is answered and the connection closes
//     after it (§6.1: "the server MUST close the connection after
//     responding to such a request"; "close the connection after
//     processing the message"); net/http keeps it open.
//   - A header block is over only at its empty line: one cut short by the
//     end of the stream is never answered (net/http answers 400 once it
//     sees the end). Either way the connection is done.
//   - "PRI * HTTP/2.0", the HTTP/2 preface, gets 505 like any HTTP/2.0
//     request: net/http hands it to handlers that upgrade to h2c.

// errMore is what the reference stream returns when it has handed out every
// byte but the client has not closed its side: the answer must wait.
var errMore = errors.New("reference: no more bytes yet")

// refStream is the client's bytes as a server's socket would deliver them.
type refStream struct {
	data []byte
	pos  int
	eof  bool // the client half-closed after data
	// drained and hitEOF say what the current message ran into.
	drained, hitEOF bool
}

func (s *refStream) Read(p []byte) (int, error) {
	if s.pos == len(s.data) {
		if s.eof {
			s.hitEOF = true
			return 0, io.EOF
		}
		s.drained = true
		return 0, errMore
	}
	n := copy(p, s.data[s.pos:])
	s.pos += n
	return n, nil
}

// refLimits are the ServerConfig limits the server under test runs with.
type refLimits struct {
	maxHeader int
	maxBody   int64
}

// verdict is what a server does with one request.
type verdict struct {
	method string // of the request, when its request line parsed
	status int    // 0: the handler gets the request; else the answer's status
	echo   string // when accepted: what the handler sees (echoRequest)
	close  bool   // the connection closes after the answer
	// hdrDone: the header block ended. A verdict on one that did not is
	// optional: the server may wait for the rest of it instead.
	hdrDone bool
}

func (v verdict) String() string {
	if v.status != 0 {
		return fmt.Sprintf("reject %d (header complete %v)", v.status, v.hdrDone)
	}
	return fmt.Sprintf("accept, close %v: %s", v.close, v.echo)
}

// reference returns the verdicts a server reaches on data, in order. With
// eof the client has half-closed after data; without, more may come, so a
// message not yet decidable gets no verdict.
func reference(data []byte, eof bool, lim refLimits) []verdict {
	s := &refStream{data: data, eof: eof}
	br := bufio.NewReaderSize(s, 4096) // net/http's server reads through 4 KiB
	var out []verdict
	for {
		s.drained, s.hitEOF = false, false
		for { // RFC 9112 §2.2
			p, _ := br.Peek(2)
			if len(p) > 0 && p[0] == '\n' {
				br.Discard(1)
			} else if len(p) == 2 && p[0] == '\r' && p[1] == '\n' {
				br.Discard(2)
			} else {
				break
			}
		}
		start := s.pos - br.Buffered()
		rest := data[start:]
		if len(rest) == 0 {
			return out
		}
		s.drained, s.hitEOF = false, false
		end := refHeaderEnd(rest)
		v := verdict{hdrDone: end >= 0}
		if end > lim.maxHeader || (end < 0 && len(rest) > lim.maxHeader) {
			v.status = http.StatusRequestHeaderFieldsTooLarge
			return append(out, v)
		}
		req, err := http.ReadRequest(br)
		if err == nil && end < 0 {
			return out // ended by the end of the stream, not an empty line
		}
		if err != nil {
			if s.drained || (s.hitEOF && end < 0) {
				return out // the rest of the header has not come (yet)
			}
			v.status = http.StatusBadRequest
			if msg := err.Error(); strings.HasPrefix(msg, "unsupported transfer encoding") ||
				strings.HasPrefix(msg, "too many transfer encodings") {
				v.status = http.StatusNotImplemented // net/http's unsupportedTEError
			}
			return append(out, v)
		}
		v.method = req.Method
		// The fields as sent: ReadRequest takes Host, Transfer-Encoding and
		// sometimes Content-Length out of req.Header.
		fields := rest[bytes.IndexByte(rest, '\n')+1 : end]
		raw, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(fields))).ReadMIMEHeader()
		if v.status = refServerChecks(req, raw, lim); v.status != 0 {
			return append(out, v)
		}

		body, status, ok := refBody(s, br, req, rest[end:], lim)
		switch {
		case status != 0:
			v.status = status
			return append(out, v)
		case !ok:
			return out // the body has not all come (yet)
		}
		_, te := raw["Transfer-Encoding"]
		_, cl := raw["Content-Length"]
		v.close = req.Close || hasTokenFold(req.Header.Get("Connection"), "close") ||
			(te && cl) || (te && !req.ProtoAtLeast(1, 1))
		v.echo = echoRequest(req.Method, req.RequestURI, req.Proto, req.Host, req.URL, req.Header, req.Trailer, body)
		out = append(out, v)
		if v.close {
			return out
		}
	}
}

// refServerChecks applies what net/http's server checks after ReadRequest,
// in its order, then this server's body limit.
func refServerChecks(req *http.Request, raw textproto.MIMEHeader, lim refLimits) int {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported
	}
	hosts := raw["Host"]
	if req.ProtoAtLeast(1, 1) && len(hosts) == 0 && req.Method != http.MethodConnect {
		return http.StatusBadRequest // RFC 9112 §3.2: Host is required in HTTP/1.1
	}
	if len(hosts) == 1 && !refValidHost(hosts[0]) {
		return http.StatusBadRequest
	}
	for k, vv := range raw {
		if !refToken(k) {
			return http.StatusBadRequest // e.g. "Content-Length " (RFC 9112 §5.1)
		}
		for _, v := range vv {
			if strings.ContainsFunc(v, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
				return http.StatusBadRequest
			}
		}
	}
	if e := req.Header.Get("Expect"); e != "" && !hasTokenFold(e, "100-continue") {
		return http.StatusExpectationFailed
	}
	if req.ContentLength > lim.maxBody {
		return http.StatusRequestEntityTooLarge
	}
	return 0
}

// refBody reads the body the way the server must see it. ok is false while
// it has not all arrived; status is set when it is refused.
func refBody(s *refStream, br *bufio.Reader, req *http.Request, raw []byte, lim refLimits) (body []byte, status int, ok bool) {
	body, err := io.ReadAll(io.LimitReader(req.Body, lim.maxBody+1))
	if len(req.TransferEncoding) == 0 {
		switch {
		case err != nil:
			return nil, 0, false // Content-Length bytes missing: only more can help
		}
		return body, 0, true
	}
	// Chunked: net/http's decoder decides what is valid; the limits are
	// this server's, counted on the raw bytes as they arrive.
	walk := refWalkChunks(raw, lim.maxBody)
	switch {
	case int64(len(body)) > lim.maxBody || walk.over:
		return nil, http.StatusRequestEntityTooLarge, false
	case walk.trailerStart >= 0 && walk.end < 0 && len(raw)-walk.trailerStart > lim.maxHeader,
		walk.end >= 0 && walk.end-walk.trailerStart > lim.maxHeader:
		return nil, http.StatusRequestHeaderFieldsTooLarge, false
	case err != nil && (s.drained || s.hitEOF):
		return nil, 0, false
	case err != nil:
		return nil, http.StatusBadRequest, false
	}
	return body, 0, true
}

// chunkWalk is what the raw bytes of a chunked body announce, read
// leniently: net/http's decoder judges validity, this only finds the
// declared sizes and where the trailer starts and ends.
type chunkWalk struct {
	over         bool // declared chunk sizes add up past the body limit
	trailerStart int  // after the last-chunk line, or -1
	end          int  // after the trailer's empty line, or -1
}

func refWalkChunks(raw []byte, max int64) chunkWalk {
	w := chunkWalk{trailerStart: -1, end: -1}
	var total int64
	pos := 0
	for {
		i := bytes.IndexByte(raw[pos:], '\n')
		if i < 0 {
			return w
		}
		line := raw[pos : pos+i]
		pos += i + 1
		if w.trailerStart >= 0 {
			if len(bytes.TrimSuffix(line, []byte("\r"))) == 0 {
				w.end = pos
				return w
			}
			continue
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		size = bytes.TrimRight(size, " \t\r")
		var n int64
		for _, c := range size {
			d := strings.IndexByte("0123456789abcdef", c|0x20)
			if d < 0 {
				return w
			}
			if n = n<<4 | int64(d); n > max {
				w.over = true
				return w
			}
		}
		if len(size) == 0 {
			return w
		}
		if n == 0 {
			w.trailerStart = pos
			continue
		}
		if total += n; total > max {
			w.over = true
			return w
		}
		if pos += int(n) + 2; pos > len(raw) {
			return w
		}
	}
}

// refHeaderEnd is where the header block at the start of b ends (after its
// empty line, which ends in LF), or -1.
func refHeaderEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// refToken reports whether s is an RFC 9110 §5.6.2 token.
func refToken(s string) bool {
	const tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !strings.ContainsRune(tchar, r) })
}

// refValidHost is net/http's leniency for Host: any byte that may appear in
// RFC 3986's uri-host or port (unreserved, sub-delims, '%', ':', '[', ']').
// An empty Host is valid (RFC 9112 §3.2: the authority may be empty).
func refValidHost(h string) bool {
	const ok = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%:[]"
	return !strings.ContainsFunc(h, func(r rune) bool { return !strings.ContainsRune(ok, r) })
}

// hasTokenFold reports whether token is one of the words of v, in any
// case: words are separated by spaces, tabs and commas, as net/http's server
// reads Expect and Connection.
func hasTokenFold(v, token string) bool {
	return slices.ContainsFunc(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }),
		func(w string) bool { return strings.EqualFold(w, token) })
}

// echoRequest renders what a handler sees of a request, the same way for
// the server under test and for the references.
func echoRequest(method, target, proto, host string, u *url.URL, header, trailer http.Header, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q %s host=%q\n", method, target, proto, host)
	if u != nil {
		fmt.Fprintf(&b, "url scheme=%q opaque=%q host=%q path=%q rawpath=%q query=%q forcequery=%v fragment=%q\n",
			u.Scheme, u.Opaque, u.Host, u.Path, u.RawPath, u.RawQuery, u.ForceQuery, u.Fragment)
	}
	for _, part := range []struct {
		name string
		h    http.Header
	}{{"header", header}, {"trailer", trailer}} {
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range part.h {
				if !yield(k) {
					return
				}
			}
		}) {
			fmt.Fprintf(&b, "%s %q: %q\n", part.name, k, part.h[k])
		}
	}
	fmt.Fprintf(&b, "body %d %q", len(body), body)
	return b.String()
}
