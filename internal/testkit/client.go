package testkit

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
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

// SideBySide times x and y round trip by round trip for b.Loop, one of
// each per iteration, which of them goes first alternating, so that both
// see the same machine noise. It returns the median of each: a round trip
// that waited for the scheduler says nothing about the server.
func SideBySide(b *testing.B, x, y *Repeater) (xMedian, yMedian time.Duration) {
	rs := [2]*Repeater{x, y}
	var spent [2][]time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for k := range rs {
			k = (k + i) % 2
			start := time.Now()
			rs[k].RoundTrip(b)
			spent[k] = append(spent[k], time.Since(start))
		}
	}
	b.StopTimer()
	return median(spent[0]), median(spent[1])
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// Drip writes s to c every interval, from a goroutine of its own, like a
// slowloris client, until a write fails (the server hung up) or the
// returned stop is called; stop waits for the goroutine and may be called
// more than once.
func Drip(c net.Conn, s string, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(c, s); err != nil {
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
