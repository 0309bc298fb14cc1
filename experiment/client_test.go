package experiment

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"demo/internal/testkit"
)

// rawServer is a testkit.RawServer whose handlers need only their
// connection.
type rawServer struct{ *testkit.RawServer }

func startRawServer(t testing.TB, handle func(net.Conn)) rawServer {
	return rawServer{testkit.StartRawServer(t, func(c net.Conn, _ <-chan struct{}) { handle(c) })}
}

func (s rawServer) endpoint(t testing.TB) endpoint {
	t.Helper()
	ep, err := parseEndpoint(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// readRequest reads one request head and returns its request line.
func readRequest(c net.Conn) string {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return ""
	}
	return req.Method + " " + req.RequestURI + " " + req.Header.Get("Connection")
}

func TestClientReadsAnAnswerOnAFreshConnection(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	s := startRawServer(t, func(c net.Conn) {
		line := readRequest(c)
		mu.Lock()
		seen = append(seen, line)
		mu.Unlock()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-ID: abc\r\nConnection: close\r\n\r\nok")
	})
	ep := s.endpoint(t)
	ep.prefix = "/api"
	for range 2 {
		r := ep.get(context.Background(), "/x", time.Now().Add(5*time.Second))
		if r.err != nil || r.status != 200 || r.requestID != "abc" || r.cause != "" || r.done.IsZero() {
			t.Fatalf("get: %+v", r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// One connection per request, each saying it will not be reused.
	if len(seen) != 2 || seen[0] != "GET /api/x close" {
		t.Errorf("server saw %q, want two connections with GET /api/x and Connection: close", seen)
	}
}

func TestClientNamesTheCauseOfAFailure(t *testing.T) {
	answer := func(resp string) func(net.Conn) {
		return func(c net.Conn) {
			readRequest(c)
			io.WriteString(c, resp)
		}
	}
	hold := make(chan struct{})
	defer close(hold)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing, _ := parseEndpoint("http://" + closed.Addr().String())
	closed.Close()

	for _, tc := range []struct {
		name    string
		ep      endpoint
		timeout time.Duration
		cause   string
		status  int
	}{
		{"refused", refusing, time.Second, CauseRefused, 0},
		{"503", startRawServer(t, answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")).endpoint(t), time.Second, "HTTP 503", 503},
		{"closed", startRawServer(t, func(c net.Conn) { readRequest(c) }).endpoint(t), time.Second, CauseClosed, 0},
		{"reset", startRawServer(t, func(c net.Conn) {
			readRequest(c)
			c.(*net.TCPConn).SetLinger(0) // close with RST
		}).endpoint(t), time.Second, CauseReset, 0},
		{"garbage", startRawServer(t, answer("hello\r\n\r\n")).endpoint(t), time.Second, CauseBadResponse, 0},
		{"timeout", startRawServer(t, func(c net.Conn) {
			readRequest(c)
			<-hold
		}).endpoint(t), 200 * time.Millisecond, CauseTimeout, 0},
	} {
		start := time.Now()
		r := tc.ep.get(context.Background(), "/", start.Add(tc.timeout))
		if r.cause != tc.cause || r.status != tc.status {
			t.Errorf("%s: cause %q status %d (%v), want %q %d", tc.name, r.cause, r.status, r.err, tc.cause, tc.status)
		}
		if took := time.Since(start); took > tc.timeout+time.Second {
			t.Errorf("%s: took %v", tc.name, took)
		}
	}
}

func TestClientStopsAtOnceWhenCancelled(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	s := startRawServer(t, func(c net.Conn) {
		readRequest(c)
		<-hold
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	r := s.endpoint(t).get(ctx, "/", time.Now().Add(time.Minute))
	if r.cause != CauseInterrupted || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled get: %+v after %v", r, time.Since(start))
	}
}

func TestParseEndpoint(t *testing.T) {
	ep, err := parseEndpoint("http://localhost:8000/api/")
	if err != nil || ep.addr != "localhost:8000" || ep.host != "localhost:8000" || ep.prefix != "/api" {
		t.Errorf("parseEndpoint: %+v %v", ep, err)
	}
	if ep, err := parseEndpoint("http://example.com"); err != nil || ep.addr != "example.com:80" {
		t.Errorf("default port: %+v %v", ep, err)
	}
	for _, bad := range []string{"https://x:1", "ftp://x", "127.0.0.1:8000", "http://", "http://u:p@x:1", "http://x:1/?q=1"} {
		if _, err := parseEndpoint(bad); err == nil {
			t.Errorf("parseEndpoint(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("parseEndpoint(%q): %q is not one line", bad, err)
		}
	}
}

func TestCheckTarget(t *testing.T) {
	ok := startRawServer(t, func(c net.Conn) {
		line := readRequest(c)
		if strings.HasPrefix(line, "GET /healthcheck ") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
	})
	url := ok.URL()
	if _, err := CheckTarget(context.Background(), url, "/healthcheck"); err != nil {
		t.Fatalf("a healthy target: %v", err)
	}
	var bad *BadTargetError
	_, err := CheckTarget(context.Background(), url, "/nope")
	if !errors.As(err, &bad) || !strings.HasPrefix(err.Error(), "--healthcheck /nope: ") || !strings.Contains(err.Error(), "404") {
		t.Errorf("404 health check: %v", err)
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := "http://" + closed.Addr().String()
	closed.Close()
	_, err = CheckTarget(context.Background(), gone, "/healthcheck")
	if !errors.As(err, &bad) || err.Error() != "--target "+gone+": cannot connect: connection refused" {
		t.Errorf("nothing listening: %v", err)
	}
}
