package eventloop

import (
	"bufio"
	"testing"
	"time"
)

// TestServerTrace: a kept-alive connection's steps in order — made, each
// request and its response numbered on the connection (HEAD sends no body),
// lost — and a request refused before the handler (400) has none of its own.
func TestServerTrace(t *testing.T) {
	type step struct {
		kind           TraceKind
		remote         string
		n              int
		method, target string
		status, body   int
	}
	steps := make(chan step, 16)
	ts := startServer(t, ServerConfig{Trace: func(ev TraceEvent) {
		s := step{kind: ev.Kind, remote: ev.Remote, n: ev.N, status: ev.Status, body: ev.BodyBytes}
		if ev.Request != nil {
			s.method, s.target = ev.Request.Method, ev.Request.Target
		}
		steps <- s
	}})
	expect := func(want ...step) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-steps:
				if got != w {
					t.Errorf("trace %+v, want %+v", got, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no trace step, want %+v", w)
			}
		}
	}

	c := ts.dial()
	send(t, c, "GET /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcHEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	readResp(t, br, "GET")
	readResp(t, br, "HEAD")
	c.Close()
	local := c.LocalAddr().String()
	expect(
		step{kind: TraceConnMade, remote: local},
		step{TraceRequest, local, 1, "GET", "/echo?x=1", 0, 0},
		step{TraceResponse, local, 1, "GET", "/echo?x=1", 200, 3},
		step{TraceRequest, local, 2, "HEAD", "/", 0, 0},
		step{TraceResponse, local, 2, "HEAD", "/", 200, 0},
		step{kind: TraceConnLost, remote: local},
	)

	c = ts.dial()
	send(t, c, "nonsense\r\n\r\n")
	if r := readResp(t, bufio.NewReader(c), "GET"); r.status != 400 {
		t.Fatalf("malformed request: %d", r.status)
	}
	c.Close()
	local = c.LocalAddr().String()
	expect(step{kind: TraceConnMade, remote: local}, step{kind: TraceConnLost, remote: local})
	select {
	case s := <-steps:
		t.Errorf("unexpected trace step %+v", s)
	default:
	}
}
