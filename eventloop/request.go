package eventloop

import (
	"net/http"
	"net/url"
)

// Request is one complete request, body included. Each field means what
// the field of the same name in http.Request means on a server (the
// server's parser gives what net/http's ReadRequest gives; see parse.go);
// only what a handler on the loop uses is here.
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

// exchange is one request and the writer that answers it: what a handler
// gets. A connection parses its next request into the exchange of the last
// one when that was answered before its handler returned (see Handler), so
// a keep-alive request allocates nothing.
type exchange struct {
	w   ResponseWriter
	r   Request
	url url.URL     // r.URL, when the server's parser filled it
	hdr http.Header // r.Header, when the server's parser filled it
	// vals backs hdr's value slices.
	vals []string
}

// fromNetHTTP takes what a handler needs from a header block net/http
// parsed.
func (r *Request) fromNetHTTP(hr *http.Request) {
	*r = Request{
		Method:  hr.Method,
		Target:  hr.RequestURI,
		URL:     hr.URL,
		Proto:   hr.Proto,
		Header:  hr.Header,
		Host:    hr.Host,
		Trailer: hr.Trailer,
		Close:   hr.Close,
		http11:  hr.ProtoAtLeast(1, 1),
	}
}
