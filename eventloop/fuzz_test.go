package eventloop

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzServerFraming sends arbitrary bytes, in two writes split at a fuzzed
// position, to a real server connection, half-closes it, and checks that the
// worker survives and that what comes back is a well-formed sequence of HTTP
// responses ending in a clean close. It is also a differential test: every
// request the server answers with 200 must be one net/http's ReadRequest
// parses from the same bytes, with the same method, target and body.
func FuzzServerFraming(f *testing.F) {
	for _, seed := range []string{
		get,
		"GET /echo?1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /echo?2 HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n" + get,
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get,
		"GET / HTTP/1.0\r\n\r\n" + get,
		"\r\nGET /echo HTTP/1.1\nHost: x\n\n",
	} {
		f.Add([]byte(seed), uint16(len(seed)/2))
	}
	// Small limits so short inputs reach the 413 and 431 paths.
	ts := startServerWith(f, ServerConfig{MaxHeaderBytes: 512, MaxBodyBytes: 256}, func(ts *testServer) Handler {
		return func(w *ResponseWriter, r *Request) {
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Target", r.Target)
			if strings.HasPrefix(r.URL.Path, "/a") { // answer later, from a timer
				ts.loop.AfterFunc(0, func() { w.Respond(200, "application/octet-stream", r.Body) })
				return
			}
			w.Respond(200, "application/octet-stream", r.Body)
		}
	})
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		ts := ts.with(t)
		cut := int(split) % (len(data) + 1)
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		// The server may already have answered and closed (a 400 early
		// in the input); a failing write is not the server's fault.
		if _, err := c.Write(data[:cut]); err == nil {
			ts.barrier()
			_, _ = c.Write(data[cut:])
		}
		_ = c.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(c)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("server neither answered nor closed within 5s; got %q", out)
			}
			t.Fatalf("reading responses: %v (a reset can destroy responses); got %q", err, out)
		}
		checkResponses(t, data, out)
		c.Close()
		ts.barrier()
		ts.eventually("the server to drop the connection", func() bool { return ts.srv.Stats().Conns == 0 })
	})
}

type parsedRequest struct {
	method, target, body string
}

// parseRequests reads requests from data the way the server should: net/http's
// ReadRequest, after skipping empty lines between requests. It stops at the
// first error; the last request may lack its body.
func parseRequests(data []byte) []parsedRequest {
	br := bufio.NewReader(bytes.NewReader(data))
	var reqs []parsedRequest
	for {
		for {
			p, _ := br.Peek(2)
			if len(p) > 0 && p[0] == '\n' {
				br.Discard(1)
			} else if len(p) == 2 && p[0] == '\r' && p[1] == '\n' {
				br.Discard(2)
			} else {
				break
			}
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return reqs
		}
		body, err := io.ReadAll(req.Body)
		reqs = append(reqs, parsedRequest{req.Method, req.RequestURI, string(body)})
		if err != nil {
			return reqs
		}
	}
}

func checkResponses(t *testing.T, data, out []byte) {
	t.Helper()
	reqs := parseRequests(data)
	br := bufio.NewReader(bytes.NewReader(out))
	for i := 0; ; {
		if _, err := br.Peek(1); err == io.EOF {
			return
		}
		method := "GET"
		if i < len(reqs) {
			method = reqs[i].method
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d is malformed: %v\nall responses: %q", i, err, out)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v\nall responses: %q", i, err, out)
		}
		if resp.StatusCode < 200 {
			if resp.StatusCode != 100 {
				t.Fatalf("unexpected interim status %d", resp.StatusCode)
			}
			continue
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Server") != "demo" || resp.Header.Get("Content-Length") == "" {
			t.Fatalf("response %d lacks Date, Server or Content-Length: %v", i, resp.Header)
		}
		if resp.StatusCode != 200 {
			// An error answer ends the connection.
			if !resp.Close {
				t.Fatalf("error response %d without Connection: close", resp.StatusCode)
			}
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				t.Fatalf("bytes after a closing response: %q", rest)
			}
			return
		}
		if i >= len(reqs) {
			t.Fatalf("server answered request %d with 200, but net/http parses only %d requests from %q", i, len(reqs), data)
		}
		want := reqs[i]
		got := parsedRequest{resp.Header.Get("X-Method"), resp.Header.Get("X-Target"), string(body)}
		if method == http.MethodHead {
			got.body = want.body // not sent; Content-Length checked below
			if resp.ContentLength != int64(len(want.body)) {
				t.Fatalf("HEAD response %d: Content-Length %d, body %d bytes", i, resp.ContentLength, len(want.body))
			}
		}
		if got != want {
			t.Fatalf("response %d answers %+v, net/http parses %+v", i, got, want)
		}
		i++
	}
}
