package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// Request framing under attack: each case is sent, as raw bytes on one
// connection, to the real binary and to a net/http server beside it. The
// rule is net/http's server's where it refuses (same status class), and
// the RFC's where it says the connection MUST close. The client never
// half-closes: an answer must come at once, and a close must be the
// server's own decision.

// framingAttack is one raw exchange and what must come of it.
type framingAttack struct {
	name string
	send string
	want []int // statuses of the answers, in order
	// closes: the server closes after the last answer (it must not wait
	// for more requests on this connection).
	closes bool
	// peerKeepsAlive: net/http's server keeps the connection open where
	// the RFC says to close it, and answers the smuggled request too.
	peerKeepsAlive bool
	why            string // the rule, for the log
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

var framingAttacks = []framingAttack{
	{
		name:   "space before the colon of Content-Length",
		send:   "POST /healthcheck HTTP/1.1\r\nHost: x\r\nContent-Length : 34\r\n\r\n" + smuggled,
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §5.1: no whitespace is allowed between the field name and colon; a server MUST reject such a request with 400 (net/http's server and nginx do); read as another field, the body would be a second request",
	},
	{
		name:   "space before the colon of Transfer-Encoding",
		send:   "POST /healthcheck HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §5.1, as above",
	},
	{
		name:   "NUL in a field value",
		send:   "GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
		want:   []int{400},
		closes: true,
		why:    "RFC 9110 §5.5: a field value has no control characters (net/http's server answers 400)",
	},
	{
		name:   "Host with a space",
		send:   "GET /healthcheck HTTP/1.1\r\nHost: a b\r\n\r\n",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §3.2: Host is uri-host [ \":\" port ]; a server MUST answer 400 to an invalid Host (net/http's server does)",
	},
	{
		name:   "Host with a slash",
		send:   "GET /healthcheck HTTP/1.1\r\nHost: a/b\r\n\r\n",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §3.2, as above",
	},
	{
		name: "empty Host",
		send: "GET /healthcheck HTTP/1.1\r\nHost:\r\n\r\nGET /healthcheck HTTP/1.1\r\nHost: \r\n\r\n",
		want: []int{200, 200},
		why:  "RFC 9112 §3.2: a target without an authority is sent with an empty Host, which is valid (net/http's server accepts it)",
	},
	{
		name:   "absolute-form target without Host",
		send:   "GET http://x/healthcheck HTTP/1.1\r\n\r\n",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, whatever its target (net/http's server does)",
	},
	{
		name:   "two Hosts",
		send:   "GET /healthcheck HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §3.2: a server MUST answer 400 to more than one Host",
	},
	{
		name:   "chunk longer than its size line",
		send:   "POST /healthcheck HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhello\r\n3\r\nabc",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §7.1: chunk-data is chunk-size octets followed by CRLF; net/http's server answers 400 as soon as the CRLF is missing, without waiting for more",
	},
	{
		name:   "chunk size line ending in a bare LF",
		send:   "POST /healthcheck HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
		want:   []int{400},
		closes: true,
		why:    "RFC 9112 §7.1 and errata 7633: chunk lines end in CRLF (net/http's server answers 400)",
	},
	{
		name:           "Content-Length and Transfer-Encoding together",
		send:           "GET /healthcheck HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want:           []int{200},
		closes:         true,
		peerKeepsAlive: true,
		why:            "RFC 9112 §6.1: a server MAY refuse such a request or read it by Transfer-Encoding alone, but MUST close the connection after answering it; here it is answered (as by net/http's server, which then keeps the connection and answers the smuggled request) and the connection closes, so the smuggled request is never read (nginx refuses with 400)",
	},
	{
		name:           "Transfer-Encoding on HTTP/1.0",
		send:           "GET /healthcheck HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
		want:           []int{200},
		closes:         true,
		peerKeepsAlive: true,
		why:            "RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the server MUST close the connection after processing it (net/http's server reads it by Content-Length and keeps the connection; nginx refuses with 400)",
	},
	{
		name:   "unknown transfer coding",
		send:   "POST /healthcheck HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
		want:   []int{501},
		closes: true,
		why:    "RFC 9112 §6.1: a server that receives a transfer coding it does not understand SHOULD answer 501 (net/http's server does)",
	},
	{
		name:   "chunked not the only transfer coding",
		send:   "POST /healthcheck HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		want:   []int{501},
		closes: true,
		why:    "RFC 9112 §6.1, as above; net/http's server implements chunked alone",
	},
	{
		name:   "unknown expectation on HTTP/1.0",
		send:   "POST /healthcheck HTTP/1.0\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx",
		want:   []int{417},
		closes: true,
		why:    "RFC 9110 §10.1.1: a server MAY answer 417 to an expectation it does not meet; net/http's server does, whatever the version",
	},
}

// TestFramingAttacks runs framingAttacks against `demo serve` — with its
// own request parser and with net/http's behind the hidden --http-parser —
// and a net/http server.
func TestFramingAttacks(t *testing.T) {
	_, url := startServe(t, "--mode", "async", "--no-access-log")
	_, refURL := startServe(t, "--mode", "async", "--no-access-log", "--http-parser", "net/http")
	demos := map[string]string{"demo": strings.TrimPrefix(url, "http://"), "demo --http-parser net/http": strings.TrimPrefix(refURL, "http://")}
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer peer.Close()
	for _, a := range framingAttacks {
		t.Run(a.name, func(t *testing.T) {
			t.Logf("rule: %s", a.why)
			for name, addr := range demos {
				got, closed := converse(t, addr, a.send)
				if !equalClasses(got, a.want, true) || closed != a.closes {
					t.Errorf("%s answered %v and closed %v, want %v and closed %v", name, got, closed, a.want, a.closes)
				}
			}
			peerGot, peerClosed := converse(t, peer.Listener.Addr().String(), a.send)
			peerWant := a.want
			if a.peerKeepsAlive {
				peerWant = append(peerWant, http.StatusOK) // the smuggled request
			}
			if !equalClasses(peerGot, peerWant, false) {
				t.Errorf("net/http's server answered %v, want the same classes as %v: the rule is wrong", peerGot, peerWant)
			}
			if peerClosed != (a.closes && !a.peerKeepsAlive) {
				t.Errorf("net/http's server closed %v: peerKeepsAlive is wrong", peerClosed)
			}
		})
	}
}

// converse writes send on a new connection and reads answers until the
// server closes it or goes quiet for a second; it returns their statuses
// (interim 1xx left out) and whether the server closed.
func converse(t *testing.T, addr, send string) (statuses []int, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatalf("write: %v", err)
	}
	br := bufio.NewReader(c)
	for {
		if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := br.Peek(1); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return statuses, true
			case errors.Is(err, os.ErrDeadlineExceeded):
				return statuses, false
			}
			t.Fatalf("after %v: %v (a reset can destroy answers)", statuses, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %v: %v", statuses, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("after %v: %v", statuses, err)
		}
		if resp.StatusCode >= 200 {
			statuses = append(statuses, resp.StatusCode)
		}
	}
}

// equalClasses compares statuses exactly, or by class (4xx, 5xx) when
// exact is false.
func equalClasses(got, want []int, exact bool) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] && (exact || got[i]/100 != want[i]/100) {
			return false
		}
	}
	return true
}
