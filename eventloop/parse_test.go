package eventloop

import (
	"fmt"
	"testing"
	"unsafe"
)

// FuzzParseHead compares the server's own parser with net/http's on one
// header block, in process, at a rate the socket-level FuzzServerFraming
// cannot reach: whatever the fast path accepts, net/http's parser (with its
// server's checks) must accept too, into the same Request and the same body
// framing. What the fast path leaves goes to net/http's parser anyway.
func FuzzParseHead(f *testing.F) {
	for _, seed := range framingSeeds {
		f.Add([]byte(seed.data))
	}
	f.Add([]byte("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"))
	f.Add([]byte("POST /a/b;c=d?x=1&y=%41 HTTP/1.0\r\nconnection: Keep-Alive\r\ncontent-length: 0007\r\nx-a:\t1 \r\nX-A: 2\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := parseTestServer()
		c := &conn{s: s, remote: "test"}
		end := c.headerEnd(data)
		if end < 0 || end > s.cfg.MaxHeaderBytes {
			return
		}
		block := data[:end]
		fast := new(exchange)
		if !c.parseFast(block, fast) {
			return
		}
		got := describeHead(c, &fast.r)
		ref := &conn{s: s, remote: "test"}
		slow := new(exchange)
		if status, msg := ref.parseNetHTTP(block, slow); status != 0 {
			t.Fatalf("%q: the fast parser accepts, net/http's refuses with %d: %s", block, status, msg)
		}
		if want := describeHead(ref, &slow.r); got != want {
			t.Fatalf("%q:\nfast parser:\n%s\nnet/http:\n%s", block, got, want)
		}
		// Parsed again into the same exchange, as on a keep-alive
		// connection, the result is the same.
		if !c.parseFast(block, fast) || describeHead(c, &fast.r) != got {
			t.Fatalf("%q: parsed again into a reused exchange, the result differs", block)
		}
	})
}

func parseTestServer() *Server {
	cfg := ServerConfig{}
	cfg.setDefaults()
	s := &Server{cfg: cfg, conns: map[*conn]struct{}{}, strs: map[string]string{}}
	s.br = newScratchReader(&s.bytesR)
	return s
}

// describeHead renders what a parser produced: the request as a handler
// sees it and the framing of its body.
func describeHead(c *conn, r *Request) string {
	hdr := r.Header.Clone()
	return fmt.Sprintf("%s\nclose=%v http11=%v bodySize=%d chunked=%v expect100=%v",
		echoRequest(r.Method, r.Target, r.Proto, r.Host, r.URL, hdr, r.Trailer, nil),
		r.Close, r.http11, c.bodySize, c.chunked, c.expect100)
}

// TestInternReturnsTheSameBytes holds intern to its bytes when strings
// share a slot in front of the table (same length, same last byte), when
// the table is cleared, and past the longest kept.
func TestInternReturnsTheSameBytes(t *testing.T) {
	s := parseTestServer()
	long := make([]byte, maxInterned+1)
	for i := range long {
		long[i] = 'a'
	}
	inputs := []string{"/x1", "/y1", "/x1", "/z1", "/y1", "", string(long), "/x1"}
	for round := 0; round < 3; round++ {
		for _, in := range inputs {
			if got := s.intern([]byte(in)); got != in {
				t.Fatalf("intern(%q) = %q", in, got)
			}
		}
		for i := 0; i < maxInternedStrs; i++ { // fill the table: it is cleared
			s.intern([]byte(fmt.Sprintf("/fill/%d", i)))
		}
	}
	first := s.intern([]byte("/same"))
	b := []byte("/same")
	if again := s.intern(b); unsafe.StringData(again) != unsafe.StringData(first) {
		t.Errorf("intern made a second copy of %q", first)
	}
	b[1] = 'S' // the caller's buffer is reused: the interned string must not change
	if first != "/same" {
		t.Errorf("interned string changed with its source buffer: %q", first)
	}
}
