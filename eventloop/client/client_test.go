package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/eventloop"
	"demo/internal/testkit"
)

// TestMain warms up what the Go runtime opens once and keeps (the netpoller's
// epoll and wakeup fds, resolver state), so that per-test fd counts compare
// like with like.
func TestMain(m *testing.M) {
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	_, _ = net.DefaultResolver.LookupNetIP(context.Background(), "ip", "localhost")
	os.Exit(m.Run())
}

// counts is what the test hooks saw.
type counts struct{ open, lookups, parses, earlyWrites, shortWrites int }

// countHooks points the package's test hooks at a fresh counts until the
// test ends. The hooks run on the loop goroutine (or the test's, with no
// loop), so read the counts there.
func countHooks(tb testing.TB) *counts {
	n := &counts{}
	var restore []func()
	for _, h := range []struct {
		hook *func()
		inc  *int
	}{
		{&testHookLookup, &n.lookups},
		{&testHookParse, &n.parses},
		{&testHookEarlyWrite, &n.earlyWrites},
		{&testHookShortWrite, &n.shortWrites},
	} {
		old, inc := *h.hook, h.inc
		*h.hook = func() { *inc++ }
		restore = append(restore, func() { *h.hook = old })
	}
	oldSocket := testHookSocket
	testHookSocket = func(delta int) { n.open += delta }
	tb.Cleanup(func() {
		testHookSocket = oldSocket
		for _, r := range restore {
			r()
		}
	})
	return n
}

func countFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents) - 1 // ReadDir's own descriptor
}

// env is a running loop with a client, torn down (and checked for fd leaks,
// stray callbacks and open sockets) when the test ends.
type env struct {
	tb testing.TB
	l  *eventloop.Loop
	c  *Client
	n  *counts // read on the loop goroutine

	mu    sync.Mutex
	calls []*int // callback count per call made through get/start
}

type result struct {
	resp    *Response
	err     error
	elapsed time.Duration
}

func newEnv(tb testing.TB, cfg Config) *env {
	tb.Helper()
	n := countHooks(tb)
	fdsBefore := countFDs(tb)
	// Registered first, so it runs last: after every server and the loop
	// registered below are closed.
	tb.Cleanup(func() {
		if n := countFDs(tb); n != fdsBefore {
			tb.Errorf("fd leak: %d open before the test, %d after", fdsBefore, n)
		}
	})
	l, err := eventloop.New()
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{tb: tb, l: l, c: New(l, cfg), n: n}
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	tb.Cleanup(func() {
		// Let already posted callbacks run, then check what the calls left.
		var open int
		e.onLoop(func() { open = e.n.open })
		e.onLoop(func() {})
		if open != 0 {
			tb.Errorf("%d client sockets still open", open)
		}
		e.mu.Lock()
		for i, n := range e.calls {
			if *n != 1 {
				tb.Errorf("call %d: callback ran %d times, want exactly once", i, *n)
			}
		}
		e.mu.Unlock()
		l.Post(l.Stop)
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return e
}

// onLoop runs fn on the loop goroutine and waits for it.
func (e *env) onLoop(fn func()) {
	ran := make(chan struct{})
	e.l.Post(func() {
		defer close(ran)
		fn()
	})
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		e.tb.Fatal("loop did not run a posted callback within 10s")
	}
}

// start issues Get on the loop (from the loop goroutine) and returns a
// channel for its result and its cancel func. It checks that the callback
// never runs inside Get.
func (e *env) start(rawURL string, timeout time.Duration) (<-chan result, func()) {
	e.tb.Helper()
	res := make(chan result, 2)
	count := new(int)
	e.mu.Lock()
	e.calls = append(e.calls, count)
	e.mu.Unlock()
	var cancel func()
	e.onLoop(func() {
		inGet := true
		begin := time.Now()
		cancel = e.c.Get(rawURL, timeout, func(resp *Response, err error) {
			*count++
			if inGet {
				e.tb.Errorf("GET %s: callback ran synchronously inside Get", rawURL)
			}
			res <- result{resp, err, time.Since(begin)}
		})
		inGet = false
	})
	return res, cancel
}

func (e *env) wait(res <-chan result) result {
	e.tb.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(10 * time.Second):
		e.tb.Fatal("no callback within 10s")
		return result{}
	}
}

func (e *env) get(rawURL string, timeout time.Duration) result {
	e.tb.Helper()
	res, _ := e.start(rawURL, timeout)
	return e.wait(res)
}

// readRequest consumes the client's request so that closing the connection
// afterwards sends FIN, not RST.
func readRequest(c net.Conn) (*bufio.Reader, *http.Request, error) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	return br, req, err
}

// respond returns a handler that reads the request, writes the chunks of
// raw in order, and closes.
func respond(raw ...string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, _ <-chan struct{}) {
		if _, _, err := readRequest(c); err != nil {
			return
		}
		for _, chunk := range raw {
			if _, err := io.WriteString(c, chunk); err != nil {
				return
			}
		}
	}
}

// respondAndHold writes raw, then keeps the connection open until the
// client closes it (or the test ends), so only parsing can end the call.
func respondAndHold(raw string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, quit <-chan struct{}) {
		if _, _, err := readRequest(c); err != nil {
			return
		}
		if _, err := io.WriteString(c, raw); err != nil {
			return
		}
		waitPeerClose(c, quit)
	}
}

// waitPeerClose returns when the peer closed c (read returns an error) or
// quit is closed; it reports whether the peer closed it.
func waitPeerClose(c net.Conn, quit <-chan struct{}) bool {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	select {
	case <-closed:
		return true
	case <-quit:
		c.Close() // unblocks io.Copy
		<-closed
		return false
	}
}

func TestGetContentLength(t *testing.T) {
	e := newEnv(t, Config{})
	reqs := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- r
		w.Header().Set("X-Test", "yes")
		fmt.Fprint(w, "hello, world")
	}))
	t.Cleanup(srv.Close)

	r := e.get(srv.URL+"/path?q=1", 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	resp := r.resp
	if resp.Proto != "HTTP/1.1" || resp.StatusCode != 200 || resp.Status != "200 OK" {
		t.Errorf("got %q %d %q, want HTTP/1.1 200 \"200 OK\"", resp.Proto, resp.StatusCode, resp.Status)
	}
	if string(resp.Body) != "hello, world" {
		t.Errorf("body %q", resp.Body)
	}
	if resp.Header.Get("X-Test") != "yes" || resp.Header.Get("Content-Length") != "12" {
		t.Errorf("headers %v", resp.Header)
	}
	req := <-reqs
	host := strings.TrimPrefix(srv.URL, "http://")
	if req.Method != "GET" || req.RequestURI != "/path?q=1" || req.Host != host {
		t.Errorf("server saw %s %s Host %q", req.Method, req.RequestURI, req.Host)
	}
	if ua, acc := req.Header.Get("User-Agent"), req.Header.Get("Accept"); ua != "demo" || acc != "*/*" {
		t.Errorf("server saw User-Agent %q Accept %q", ua, acc)
	}
	if !req.Close {
		t.Error("request did not ask for Connection: close")
	}
}

func TestGetChunked(t *testing.T) {
	e := newEnv(t, Config{})
	part := strings.Repeat("0123456789abcdef", 100) // 1600 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 200 { // ~320 KB in many flushes: spans many reads
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)

	r := e.get(srv.URL, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := len(r.resp.Body), 200*len(part); got != want || string(r.resp.Body[:len(part)]) != part {
		t.Errorf("body of %d bytes, want %d", got, want)
	}
	if cl := r.resp.Header.Get("Content-Length"); cl != "" {
		t.Errorf("Content-Length %q: the response was not chunked", cl)
	}
}

func TestGetBodyUntilEOF(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"HTTP/1.1", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			srv := testkit.StartRawServer(t, respond(tc.head, "until ", "EOF"))
			r := e.get(srv.URL()+"/", 5*time.Second)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if string(r.resp.Body) != "until EOF" || r.resp.Proto != tc.name {
				t.Errorf("got %s body %q", r.resp.Proto, r.resp.Body)
			}
		})
	}
}

// TestCompleteWithoutWaitingForEOF: a response whose framing says it is
// complete finishes the call even though the server keeps the connection.
func TestCompleteWithoutWaitingForEOF(t *testing.T) {
	for name, raw := range map[string]string{
		"content-length": "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody",
		"chunked":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nbo\r\n2\r\ndy\r\n0\r\n\r\n",
		"trailer":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nX-Sum: 1\r\n\r\n",
		"no content":     "HTTP/1.1 204 No Content\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Config{})
			srv := testkit.StartRawServer(t, respondAndHold(raw))
			r := e.get(srv.URL()+"/", 5*time.Second)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if want := map[bool]string{true: "", false: "body"}[name == "no content"]; string(r.resp.Body) != want {
				t.Errorf("body %q, want %q", r.resp.Body, want)
			}
			if r.elapsed > 2*time.Second {
				t.Errorf("took %v: the call waited for EOF", r.elapsed)
			}
		})
	}
}

// feed drives a call's read side without a socket: it hands the call
// pieces of a response as successive reads (then EOF if eof) and reports
// after how many bytes it finished (-1: not at all; len+1: at EOF) and
// the parses that took.
func feed(t *testing.T, pieces []string, eof bool) (r result, doneAt, parses int) {
	t.Helper()
	hooks := countHooks(t)
	c := New(nil, Config{}) // no loop needed: no timer, no socket
	doneAt = -1
	calls, n := 0, 0
	k := &call{c: c, t: &target{url: "http://x/"}, fd: -1, state: stateReading, cb: func(resp *Response, err error) {
		calls++
		r = result{resp: resp, err: err}
		doneAt = n
	}}
	for _, p := range pieces {
		if calls > 0 {
			break
		}
		n += len(p)
		copy(c.scratch, p) // as read() does
		k.consume(c.scratch[:len(p)], false)
	}
	if calls == 0 && eof {
		n++
		k.consume(c.scratch[:0], true)
	}
	if calls > 1 {
		t.Errorf("callback ran %d times", calls)
	}
	return r, doneAt, hooks.parses
}

func bytewise(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}

// TestResponseInPieces checks completion detection however a response is
// split across reads, and that trickling bytes do not cost a parse each.
func TestResponseInPieces(t *testing.T) {
	body := strings.Repeat("0123456789", 10)
	chunks := strings.Repeat("a\r\n0123456789\r\n", 10)
	for _, tc := range []struct {
		name, raw string
		untilEOF  bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + "0\r\n\r\n", false},
		{"trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + "0\r\nX-A: b\r\n\r\n", false},
		{"1xx first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body, false},
		{"until EOF", "HTTP/1.1 200 OK\r\n\r\n" + body, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, pieces []string, maxParses int) {
				r, doneAt, parses := feed(t, pieces, true)
				if r.err != nil || string(r.resp.Body) != body {
					t.Fatalf("%s: got %v", how, r.err)
				}
				wantAt := len(tc.raw) // complete on its last byte...
				if tc.untilEOF {
					wantAt++ // ...or at EOF
				}
				if doneAt != wantAt {
					t.Errorf("%s: done after %d bytes, want %d", how, doneAt, wantAt)
				}
				if parses > maxParses {
					t.Errorf("%s: %d parses, want at most %d", how, parses, maxParses)
				}
			}
			check("byte by byte", bytewise(tc.raw), 5)
			for i := 1; i < len(tc.raw); i++ {
				check(fmt.Sprintf("split at %d", i), []string{tc.raw[:i], tc.raw[i:]}, 3)
			}
			if !tc.untilEOF {
				if _, doneAt, _ := feed(t, []string{tc.raw}, false); doneAt != len(tc.raw) {
					t.Error("a complete response needed EOF")
				}
			}
		})
	}
}

func TestNon2xxIsAResponse(t *testing.T) {
	e := newEnv(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		http.Error(w, "nope", code)
	}))
	t.Cleanup(srv.Close)
	for _, code := range []int{404, 500, 503} {
		r := e.get(srv.URL+"/"+strconv.Itoa(code), 5*time.Second)
		if r.err != nil {
			t.Fatalf("%d: %v", code, r.err)
		}
		if r.resp.StatusCode != code || r.resp.Status != fmt.Sprintf("%d %s", code, http.StatusText(code)) || string(r.resp.Body) != "nope\n" {
			t.Errorf("got %d %q body %q", r.resp.StatusCode, r.resp.Status, r.resp.Body)
		}
	}
}

func TestInformationalResponsesAreSkipped(t *testing.T) {
	e := newEnv(t, Config{})
	srv := testkit.StartRawServer(t, respond("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	r := e.get(srv.URL()+"/", 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.StatusCode != 200 || string(r.resp.Body) != "ok" {
		t.Errorf("got %d %q", r.resp.StatusCode, r.resp.Body)
	}
}

// refusingPort returns a port with a socket bound but not listening: a
// connect is refused, and no other test can take the port meanwhile.
func refusingPort(t *testing.T) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

func TestConnectionRefused(t *testing.T) {
	port := refusingPort(t)
	e := newEnv(t, Config{})
	for _, host := range []string{"127.0.0.1", "localhost"} {
		u := fmt.Sprintf("http://%s:%d/", host, port)
		r := e.get(u, 5*time.Second)
		if !errors.Is(r.err, unix.ECONNREFUSED) {
			t.Fatalf("%s: got %v, want ECONNREFUSED", u, r.err)
		}
		want := fmt.Sprintf("GET %s: connect 127.0.0.1:%d: connection refused", u, port)
		if r.err.Error() != want {
			t.Errorf("error reads %q\nwant %q", r.err, want)
		}
	}
}

func TestResponseCutShort(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
	t.Run("reset", func(t *testing.T) {
		e := newEnv(t, Config{})
		srv := testkit.StartRawServer(t, func(c net.Conn, _ <-chan struct{}) {
			if _, _, err := readRequest(c); err != nil {
				return
			}
			io.WriteString(c, head+"only the start")
			c.(*net.TCPConn).SetLinger(0) // close sends RST
		})
		r := e.get(srv.URL()+"/", 5*time.Second)
		if !errors.Is(r.err, unix.ECONNRESET) {
			t.Fatalf("got %v, want ECONNRESET", r.err)
		}
	})
	for name, raw := range map[string]string{
		"content-length": head + "only the start",
		"chunked":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly the",
		"header":         "HTTP/1.1 200 OK\r\nContent-Len",
		"nothing":        "",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Config{})
			srv := testkit.StartRawServer(t, respond(raw))
			r := e.get(srv.URL()+"/", 5*time.Second)
			if !errors.Is(r.err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want io.ErrUnexpectedEOF", r.err)
			}
			if want := fmt.Sprintf("connection closed after %d bytes", len(raw)); !strings.Contains(r.err.Error(), want) {
				t.Errorf("error %q does not say %q", r.err, want)
			}
		})
	}
}

func TestGarbageIsAnErrorWithoutWaitingForEOF(t *testing.T) {
	for name, raw := range map[string]string{
		"ssh":          "SSH-2.0-OpenSSH_9.6\r\n",
		"status":       "HTTP/1.1 2xx OK\r\n\r\n",
		"length":       "HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
		"chunk size":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"header line":  "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"binary":       "\x00\x01\x02\xff\xfe\n\n",
		"too many 1xx": strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Config{})
			srv := testkit.StartRawServer(t, respondAndHold(raw))
			r := e.get(srv.URL()+"/", 5*time.Second)
			if r.err == nil {
				t.Fatalf("got %d %q, want an error", r.resp.StatusCode, r.resp.Body)
			}
			if !strings.Contains(r.err.Error(), "parse response: ") {
				t.Errorf("error %q is not a parse error", r.err)
			}
			if r.elapsed > 2*time.Second {
				t.Errorf("took %v: the error waited for something", r.elapsed)
			}
		})
	}
}

func TestMaxResponseBytes(t *testing.T) {
	body := strings.Repeat("x", 5000)
	for name, handler := range map[string]func(net.Conn, <-chan struct{}){
		// Declared too large: refused before the body arrives.
		"content-length": respondAndHold("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"),
		"until EOF":      respondAndHold("HTTP/1.1 200 OK\r\n\r\n" + body),
		"chunked":        respondAndHold("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + body),
		"header":         respondAndHold("HTTP/1.1 200 OK\r\nX-Big: " + body),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Config{MaxResponseBytes: 1000})
			srv := testkit.StartRawServer(t, handler)
			r := e.get(srv.URL()+"/", 5*time.Second)
			if r.err == nil || !strings.Contains(r.err.Error(), "exceeds the limit") {
				t.Fatalf("got %v, want a size error", r.err)
			}
		})
	}
	t.Run("fits", func(t *testing.T) {
		e := newEnv(t, Config{MaxResponseBytes: 6000})
		srv := testkit.StartRawServer(t, respond("HTTP/1.1 200 OK\r\n\r\n"+body))
		if r := e.get(srv.URL()+"/", 5*time.Second); r.err != nil || len(r.resp.Body) != 5000 {
			t.Fatalf("got %v", r.err)
		}
	})
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, Config{})
	peerClosed := make(chan bool, 1)
	srv := testkit.StartRawServer(t, func(c net.Conn, quit <-chan struct{}) {
		if _, _, err := readRequest(c); err != nil {
			return
		}
		peerClosed <- waitPeerClose(c, quit) // hang: never respond
	})
	const timeout = 200 * time.Millisecond
	r := e.get(srv.URL()+"/", timeout)
	if !errors.Is(r.err, ErrTimeout) || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrTimeout", r.err)
	}
	var te interface{ Timeout() bool }
	if !errors.As(r.err, &te) || !te.Timeout() {
		t.Errorf("%v has no Timeout() == true", r.err)
	}
	if !strings.HasSuffix(r.err.Error(), ": read response: timeout after 200ms") {
		t.Errorf("error reads %q", r.err)
	}
	if r.elapsed < timeout || r.elapsed > 3*timeout {
		t.Errorf("timed out after %v, want about %v", r.elapsed, timeout)
	}
	select {
	case closed := <-peerClosed:
		if !closed {
			t.Error("client did not close the connection")
		}
	case <-time.After(5 * time.Second):
		t.Error("server never saw the client close")
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, Config{})
	gotRequest := make(chan struct{}, 1)
	peerClosed := make(chan bool, 1)
	srv := testkit.StartRawServer(t, func(c net.Conn, quit <-chan struct{}) {
		if _, _, err := readRequest(c); err != nil {
			return
		}
		gotRequest <- struct{}{}
		peerClosed <- waitPeerClose(c, quit)
	})

	res, cancel := e.start(srv.URL()+"/", 0)
	<-gotRequest
	e.onLoop(func() {
		cancel()
		cancel() // idempotent
	})
	r := e.wait(res)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", r.err)
	}
	if closed := <-peerClosed; !closed {
		t.Error("client did not close the connection")
	}
	e.onLoop(cancel) // after completion: nothing happens (env checks the count)

	t.Run("right after Get", func(t *testing.T) {
		done := make(chan error, 1)
		e.onLoop(func() {
			called := false
			cancel := e.c.Get(srv.URL()+"/", 0, func(_ *Response, err error) {
				called = true
				done <- err
			})
			cancel()
			if called {
				t.Error("callback ran inside cancel")
			}
		})
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

func TestErrorsBeforeConnecting(t *testing.T) {
	e := newEnv(t, Config{})
	for u, want := range map[string]string{
		"https://127.0.0.1/":           "GET https://127.0.0.1/: https is not supported, only plain http",
		"ftp://127.0.0.1/":             `GET ftp://127.0.0.1/: unsupported scheme "ftp"`,
		"http:///nohost":               "GET http:///nohost: missing host",
		"http://127.0.0.1:x/":          `GET http://127.0.0.1:x/: parse "http://127.0.0.1:x/": invalid port ":x" after host`,
		"http://127.0.0.1:0/":          `GET http://127.0.0.1:0/: invalid port "0"`,
		"http://u:secret@127.0.0.1:0/": `GET http://u:xxxxx@127.0.0.1:0/: invalid port "0"`,
	} {
		// start checks that the callback does not run inside Get.
		r := e.get(u, time.Second)
		if r.err == nil || r.err.Error() != want {
			t.Errorf("got %v\nwant %s", r.err, want)
		}
	}
}

// TestLoopKeepsRunning is the point of the package: while a call waits for
// a slow server, the loop fires its timers on time.
func TestLoopKeepsRunning(t *testing.T) {
	e := newEnv(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond): // the slow external API
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(srv.Close)

	type tick struct {
		at          time.Duration
		callPending bool
	}
	ticked := make(chan tick, 1)
	done := make(chan result, 1)
	e.onLoop(func() {
		begin := time.Now()
		pending := true
		e.c.Get(srv.URL, 5*time.Second, func(resp *Response, err error) {
			pending = false
			done <- result{resp, err, time.Since(begin)}
		})
		e.l.AfterFunc(50*time.Millisecond, func() {
			ticked <- tick{time.Since(begin), pending}
		})
	})
	tk := <-ticked
	if !tk.callPending {
		t.Error("the call finished before the 50ms timer: the server was not slow")
	}
	if tk.at > 200*time.Millisecond {
		t.Errorf("a 50ms timer fired after %v while a call was pending", tk.at)
	}
	r := <-done
	if r.err != nil || string(r.resp.Body) != "slow" {
		t.Fatalf("got %v", r.err)
	}
	if r.elapsed < 300*time.Millisecond {
		t.Errorf("slow call finished after %v", r.elapsed)
	}
}

func TestConcurrentCalls(t *testing.T) {
	e := newEnv(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(srv.Close)

	const n = 200
	results := make(chan result, n)
	want := make(map[string]bool, n)
	var peakOpen int
	e.onLoop(func() {
		for i := range n {
			path := "/" + strconv.Itoa(i)
			want[path] = true
			e.c.Get(srv.URL+path, 10*time.Second, func(resp *Response, err error) {
				results <- result{resp: resp, err: err}
			})
			peakOpen = max(peakOpen, e.n.open)
		}
	})
	begin := time.Now()
	for range n {
		r := e.wait(results)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !want[string(r.resp.Body)] {
			t.Fatalf("unexpected or repeated body %q", r.resp.Body)
		}
		delete(want, string(r.resp.Body))
	}
	t.Logf("%d concurrent calls done in %v", n, time.Since(begin))
	if peakOpen != n {
		t.Errorf("%d sockets open at once, want %d: the calls were not concurrent", peakOpen, n)
	}
}

func TestLocalhost(t *testing.T) {
	e := newEnv(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "local")
	}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s, want 127.0.0.1", srv.URL)
	}
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	// Many calls at once share one lookup...
	const n = 50
	results := make(chan result, n)
	e.onLoop(func() {
		for range n {
			e.c.Get(u, 5*time.Second, func(resp *Response, err error) { results <- result{resp: resp, err: err} })
		}
	})
	for range n {
		if r := e.wait(results); r.err != nil || string(r.resp.Body) != "local" {
			t.Fatalf("got %v", r.err)
		}
	}
	// ...and a later call reuses it.
	if r := e.get(u, 5*time.Second); r.err != nil {
		t.Fatal(r.err)
	}
	var lookups int
	e.onLoop(func() { lookups = e.n.lookups })
	if lookups != 1 {
		t.Errorf("%d lookups for %d calls to one host, want 1", lookups, n+1)
	}
}

// TestAddressOrderAndFallback feeds a lookup result as the resolver would
// hand it over: IPv4 addresses are tried first, in order, and a refused
// connect falls back to the next address.
func TestAddressOrderAndFallback(t *testing.T) {
	e := newEnv(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "second address")
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	refused := refusingPort(t)

	var order []netip.Addr
	e.onLoop(func() {
		ent := &dnsEntry{pending: true}
		e.c.dns["dual.test"] = ent
		e.c.resolved("dual.test", ent, []netip.Addr{
			netip.MustParseAddr("::1"),
			netip.MustParseAddr("127.0.0.2"), // nothing listens here: refused
			netip.MustParseAddr("::ffff:127.0.0.1"),
		}, nil)
		order = ent.addrs
	})
	if want := "[127.0.0.2 127.0.0.1 ::1]"; fmt.Sprint(order) != want {
		t.Errorf("addresses ordered %v, want %s", order, want)
	}
	r := e.get(fmt.Sprintf("http://dual.test:%d/", port), 5*time.Second)
	if r.err != nil || string(r.resp.Body) != "second address" {
		t.Fatalf("got %v", r.err)
	}
	// When every address fails, the error is about the preferred one.
	r = e.get(fmt.Sprintf("http://dual.test:%d/", refused), 5*time.Second)
	if want := fmt.Sprintf("connect 127.0.0.2:%d: connection refused", refused); r.err == nil || !strings.HasSuffix(r.err.Error(), want) {
		t.Errorf("got %v, want ...%s", r.err, want)
	}
	var lookups int
	e.onLoop(func() { lookups = e.n.lookups })
	if lookups != 0 {
		t.Errorf("%d lookups: the cached result was not used", lookups)
	}
}

// TestManyPendingCallsAreCheap holds many calls open at once on one loop (a
// listener that never accepts) and checks what each one costs.
func TestManyPendingCallsAreCheap(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(n)+200 {
		n = int(rl.Cur) - 200
		t.Logf("fd limit %d: holding %d calls", rl.Cur, n)
	}
	e := newEnv(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := "http://" + ln.Addr().String() + "/"

	results := make(chan result, n)
	cancels := make([]func(), 0, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	begin := time.Now()
	e.onLoop(func() {
		for range n {
			cancels = append(cancels, e.c.Get(u, time.Minute, func(resp *Response, err error) {
				results <- result{resp: resp, err: err}
			}))
		}
	})
	started := time.Since(begin)
	e.onLoop(func() {}) // let the loop process the connects
	runtime.GC()
	runtime.ReadMemStats(&after)
	perCall := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(n)
	t.Logf("%d pending calls: started in %v, %d bytes of heap each", n, started, perCall)
	if perCall > 4096 {
		t.Errorf("each pending call holds %d bytes of heap, want a few hundred", perCall)
	}
	var open int
	e.onLoop(func() { open = e.n.open })
	if open != n || len(results) != 0 {
		t.Fatalf("%d sockets open and %d calls done, want %d open and none done", open, len(results), n)
	}

	e.onLoop(func() {
		for _, cancel := range cancels {
			cancel()
		}
	})
	for range n {
		if r := e.wait(results); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", r.err)
		}
	}
}

// TestRequestGoesOutWithConnect: on loopback connect(2) has done the
// handshake by the time it returns, so the request is written at once and
// the socket registered for reading only, with no wait for EPOLLOUT. The
// kernel may hand the handshake to ksoftirqd on a busy machine, so only
// some calls are required to take that path; every call must succeed.
func TestRequestGoesOutWithConnect(t *testing.T) {
	e := newEnv(t, Config{})
	var seen sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.RequestURI, true)
		io.WriteString(w, r.RequestURI)
	}))
	t.Cleanup(srv.Close)
	const n = 20
	for i := range n {
		uri := "/same"
		if i%5 == 4 {
			uri = "/other" + strconv.Itoa(i) // the parsed-URL cache must follow
		}
		r := e.get(srv.URL+uri, 5*time.Second)
		if r.err != nil || string(r.resp.Body) != uri {
			t.Fatalf("call %d: got %v, want body %q", i, r.err, uri)
		}
	}
	var early, short int
	e.onLoop(func() { early, short = e.n.earlyWrites, e.n.shortWrites })
	t.Logf("%d of %d requests written right after connect", early, n)
	if early == 0 {
		t.Errorf("no request of %d went out with its connect", n)
	}
	if short != 0 {
		t.Errorf("%d short writes of small requests", short)
	}
}

// TestRequestAfterSlowConnect takes the other path: a listener whose
// accept queue is full drops the SYN, so the connect is still in progress
// when the request is first tried; it goes out once the kernel's SYN
// retransmit (after about 1 s) gets through.
func TestRequestAfterSlowConnect(t *testing.T) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = unix.Listen(lfd, 0) // full with one connection waiting
	}
	if err != nil {
		unix.Close(lfd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(lfd), "listener")
	ln, err := net.FileListener(f) // a duplicate: same queue, Go's poller
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	e := newEnv(t, Config{})

	filler, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	res, _ := e.start("http://"+ln.Addr().String()+"/slow", 10*time.Second)
	var early int
	e.onLoop(func() { early = e.n.earlyWrites })
	if early != 0 {
		t.Fatal("the request went out although the accept queue was full")
	}
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			for i := range 2 { // the filler, then the call
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				defer c.Close()
				if i == 0 {
					continue
				}
				_, req, err := readRequest(c)
				if err != nil {
					return err
				}
				_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"+req.RequestURI[1:])
				return err
			}
			return nil
		}()
	}()
	r := e.wait(res)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if r.err != nil || string(r.resp.Body) != "slow" {
		t.Fatalf("got %v", r.err)
	}
}

// TestShortWrite sends a request larger than the socket buffers take at
// once, so that its rest waits for EPOLLOUT.
func TestShortWrite(t *testing.T) {
	e := newEnv(t, Config{})
	path := "/" + strings.Repeat("p", 8<<20)
	srv := testkit.StartRawServer(t, func(c net.Conn, _ <-chan struct{}) {
		_, req, err := readRequest(c)
		if err != nil {
			return
		}
		n := strconv.Itoa(len(req.RequestURI))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(n))+"\r\n\r\n"+n)
	})
	r := e.get(srv.URL()+path, 10*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := string(r.resp.Body); got != strconv.Itoa(len(path)) {
		t.Errorf("server read a request target of %s bytes, want %d", got, len(path))
	}
	var short int
	var reqBuf int
	e.onLoop(func() { short, reqBuf = e.n.shortWrites, cap(e.c.reqBuf) })
	if short == 0 {
		t.Error("an 8 MiB request went out in one write")
	}
	if reqBuf > maxFreeBufCap {
		t.Errorf("the client keeps a %d-byte request buffer", reqBuf)
	}
}
