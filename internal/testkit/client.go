package testkit

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// UnixClient is an HTTP client that dials the unix socket at path, whatever
// the URL's host, on a fresh connection per request; it gives up on one
// after 10 s.
func UnixClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}

// Repeater sends one request over a kept-alive connection again and again
// and reads each response whole without parsing it: a server answers the
// same request with the same number of bytes (its Date header is
// fixed-width), which the first response tells. So a benchmark measures the
// server, and allocates nothing itself per round trip.
type Repeater struct {
	conn net.Conn
	req  []byte
	buf  []byte
	size int
}

// NewRepeater sends req once on conn, which it owns from now on, to learn
// the response's size.
func NewRepeater(tb testing.TB, conn net.Conn, req []byte) *Repeater {
	tb.Helper()
	tb.Cleanup(func() { conn.Close() })
	r := &Repeater{conn: conn, req: req, buf: make([]byte, 4096)}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		tb.Fatal(err)
	}
	if _, err := conn.Write(req); err != nil {
		tb.Fatal(err)
	}
	for got := 0; r.size == 0 || got < r.size; {
		n, err := conn.Read(r.buf[got:])
		if err != nil {
			tb.Fatal(err)
		}
		got += n
		if i := bytes.Index(r.buf[:got], []byte("\r\n\r\n")); i >= 0 && r.size == 0 {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(r.buf[:i+4])), nil)
			if err != nil {
				tb.Fatal(err)
			}
			r.size = i + 4 + int(resp.ContentLength)
		}
	}
	return r
}

// RoundTrip sends the request and reads its response.
func (r *Repeater) RoundTrip(tb testing.TB) {
	if _, err := r.conn.Write(r.req); err != nil {
		tb.Fatal(err)
	}
	for got := 0; got < r.size; {
		n, err := r.conn.Read(r.buf[got:])
		if err != nil {
			tb.Fatal(err)
		}
		got += n
	}
}
