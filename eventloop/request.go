package eventloop

import (
	"net/http"
	"net/url"
)

// Request is one complete request, body included. The server parses the
// header block with net/http's ReadRequest, so each field means what the
// field of the same name in http.Request means on a server; only what a
// handler on the loop uses is here.
type Request struct {
	Method     string
	Target     string   // the request-target as sent: "/path?q=1" (http.Request's RequestURI)
	URL        *url.URL // Target, parsed
	Proto      string   // "HTTP/1.1"
	Header     http.Header
	Host       string      // from the Host header (or an absolute Target)
	Trailer    http.Header // fields after a chunked body, or nil
	Body       []byte      // the whole body, Content-Length or de-chunked; owned by the handler
	RemoteAddr string      // "127.0.0.1:54321", or "unix" for a unix-socket client
	// Close says the connection closes after the response: the client
	// asked for it, or the handler sets it to.
	Close bool

	http11 bool // HTTP/1.1 or later: kept alive without being asked
}

// newRequest takes what a handler needs from a parsed header block.
func newRequest(hr *http.Request, body []byte, remote string) Request {
	return Request{
		Method:     hr.Method,
		Target:     hr.RequestURI,
		URL:        hr.URL,
		Proto:      hr.Proto,
		Header:     hr.Header,
		Host:       hr.Host,
		Trailer:    hr.Trailer,
		Body:       body,
		RemoteAddr: remote,
		Close:      hr.Close,
		http11:     hr.ProtoAtLeast(1, 1),
	}
}
