package client

import (
	"bytes"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"demo/internal/testkit"
)

// seedResponses are what servers send, well or badly. The checked-in corpus
// under testdata/fuzz/FuzzResponseReader holds the same ones.
var seedResponses = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nuntil eof",
	"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
	"SSH-2.0-OpenSSH_9.6\r\n",
	"",
}

// FuzzParseResponse checks the pure parse step: it never panics, and its
// answers on a prefix (more may come) agree with those on the whole input
// (the server closed): complete stays complete and equal, an error stays an
// error, and only "incomplete" may change.
func FuzzParseResponse(f *testing.F) {
	for _, s := range seedResponses {
		for _, split := range []uint16{0, uint16(len(s) / 2), uint16(len(s))} {
			f.Add([]byte(s), split)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, split uint16) {
		full, _, fullErr := parseResponse(raw, true)
		if fullErr == errIncomplete {
			t.Fatal("incomplete although the server closed")
		}
		k := int(split) % (len(raw) + 1)
		part, fr, partErr := parseResponse(raw[:k], false)
		switch {
		case partErr == nil:
			if fullErr != nil {
				t.Fatalf("complete after %d of %d bytes, but the whole fails: %v", k, len(raw), fullErr)
			}
			assertSameResponse(t, part, full)
		case partErr == errIncomplete:
			if fr.headerLen > k {
				t.Fatalf("header of %d bytes in a %d-byte prefix", fr.headerLen, k)
			}
		default:
			if fullErr == nil {
				t.Fatalf("error after %d of %d bytes (%v), but the whole parses", k, len(raw), partErr)
			}
		}
	})
}

func assertSameResponse(t *testing.T, got, want *Response) {
	t.Helper()
	if got.Proto != want.Proto || got.StatusCode != want.StatusCode || got.Status != want.Status ||
		!bytes.Equal(got.Body, want.Body) || !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// FuzzResponseReader feeds arbitrary bytes as a real server's response and
// checks that the client neither panics nor leaks, calls back exactly once,
// and agrees with parseResponse on the whole input.
func FuzzResponseReader(f *testing.F) {
	e := newEnv(f, Config{})
	payloads := make(chan []byte, 1)
	srv := testkit.StartRawServer(f, func(c net.Conn, quit <-chan struct{}) {
		if _, _, err := readRequest(c); err != nil {
			return
		}
		select {
		case p := <-payloads:
			_, _ = c.Write(p) // the client may already have given up
		case <-quit:
		}
	})
	u := srv.URL() + "/"

	f.Fuzz(func(t *testing.T, raw []byte) {
		payloads <- raw
		defer func() {
			select { // not taken if the call failed before connecting
			case <-payloads:
			default:
			}
		}()
		results := make(chan result, 2)
		calls := 0
		e.l.Post(func() {
			e.c.Get(u, 10*time.Second, func(resp *Response, err error) {
				calls++
				results <- result{resp: resp, err: err}
			})
		})
		var r result
		select {
		case r = <-results:
		case <-time.After(15 * time.Second):
			t.Fatal("no callback within 15s")
		}
		// Anything a buggy call would still do is queued behind this.
		var n, open int
		synced := make(chan struct{})
		e.l.Post(func() { n, open = calls, e.n.open; close(synced) })
		<-synced
		if n != 1 || open != 0 {
			t.Fatalf("callback ran %d times, %d sockets open", n, open)
		}

		if errors.Is(r.err, ErrTimeout) {
			t.Fatalf("the call hung although the server closed: %v", r.err)
		}
		want, _, wantErr := parseResponse(raw, true)
		switch {
		case r.err == nil && wantErr != nil:
			t.Fatalf("client got %d %q, parser says %v", r.resp.StatusCode, r.resp.Body, wantErr)
		case r.err != nil && wantErr == nil:
			t.Fatalf("client failed (%v), parser got %d", r.err, want.StatusCode)
		case r.err == nil:
			assertSameResponse(t, r.resp, want)
		}
	})
}
