package eventloop

import (
	"net/http"
)

// Request is one complete request, body included.
type Request struct {
	*http.Request        // parsed with http.ReadRequest; its Body is http.NoBody
	Body          []byte // the whole body, Content-Length or de-chunked; owned by the handler
	RemoteAddr    string // "127.0.0.1:54321"
}
