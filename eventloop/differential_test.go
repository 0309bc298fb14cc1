package eventloop

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// netHTTPDifferences are the seeds on which the reference departs from
// net/http's server on purpose (see reference_test.go), with why.
var netHTTPDifferences = map[string]string{
	"leading empty lines and bare LF": "RFC 9112 §2.2: empty lines before a request-line are skipped; net/http only skips them after a POST",
	"CL and TE":                       "RFC 9112 §6.1: the connection closes after a request with both Content-Length and Transfer-Encoding",
	"CL and TE smuggling":             "RFC 9112 §6.1: the connection closes after a request with both Content-Length and Transfer-Encoding",
	"TE and CL order":                 "RFC 9112 §6.1: the connection closes after a request with both Content-Length and Transfer-Encoding",
	"TE on HTTP/1.0":                  "RFC 9112 §6.1: the connection closes after an HTTP/1.0 request with Transfer-Encoding",
	"TE on HTTP/1.0 without CL":       "RFC 9112 §6.1: the connection closes after an HTTP/1.0 request with Transfer-Encoding",
	"PRI preface":                     "the HTTP/2 preface is refused like any HTTP/2.0 request; net/http hands it to h2c handlers",
	"trailer bare LF at the end":      "a body cut short by the end of the stream is not answered: the handler runs once the body is complete; net/http runs it on the header, and its body read fails",
	"asterisk form":                   "net/http's server answers OPTIONS * itself; here the handler does",
}

// TestReferenceMatchesNetHTTPServer holds the reference to a real net/http
// server on loopback, seed by seed: it must reach net/http's verdicts
// (same status class when refused, the same request and keep-alive
// decision when accepted) except where netHTTPDifferences says why not.
// It is what keeps the reference honest about the rules net/http's server
// adds beyond ReadRequest.
func TestReferenceMatchesNetHTTPServer(t *testing.T) {
	const maxBody = 1 << 20
	lim := refLimits{maxHeader: http.DefaultMaxHeaderBytes, maxBody: maxBody}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What a handler reading the body gets: net/http's server does not
		// refuse a bad chunked body or a large one itself.
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		switch {
		case err != nil:
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusBadRequest)
			return
		case len(body) > maxBody:
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		echo := echoRequest(r.Method, r.RequestURI, r.Proto, r.Host, r.URL, r.Header, r.Trailer, body)
		w.Header().Set("X-Echo", base64.StdEncoding.EncodeToString([]byte(echo)))
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	for _, seed := range framingSeeds {
		t.Run(seed.name, func(t *testing.T) {
			data := []byte(seed.data)
			want := reference(data, true, lim)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write(data) // net/http may have answered and closed already
			_ = c.(*net.TCPConn).CloseWrite()
			out, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Logf("reading net/http's answers: %v", err)
			}
			got, rest := readAnswersFrom(t, out, want, false)
			if len(rest) > 0 {
				t.Fatalf("net/http's answers end in %q", rest)
			}
			err = diffVerdicts(want, got, true)
			why, explained := netHTTPDifferences[seed.name]
			switch {
			case explained && err == nil:
				t.Errorf("the reference agrees with net/http's server, but netHTTPDifferences says %q", why)
			case explained:
				t.Logf("differs on purpose (%s): %v", why, err)
			case err != nil:
				t.Errorf("input %q: %v", data, err)
			}
		})
	}
}
