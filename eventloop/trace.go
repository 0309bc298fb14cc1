package eventloop

import "net/http"

// TraceKind is a step of a connection's or a request's life that
// ServerConfig.Trace is told of: those Uvicorn logs at its trace level.
type TraceKind uint8

const (
	// TraceConnMade: a connection was accepted and joined the loop.
	TraceConnMade TraceKind = iota + 1
	// TraceConnLost: a connection's socket was closed, by either side.
	TraceConnLost
	// TraceRequest: a request was handed to the handler.
	TraceRequest
	// TraceResponse: the handler responded; the answer is queued on its
	// connection (the access log line follows).
	TraceResponse
)

// TraceEvent is what ServerConfig.Trace receives.
type TraceEvent struct {
	Kind   TraceKind
	Remote string // the client, as Request.RemoteAddr
	// The request and response steps: the request's number on its
	// connection (1, then 2, … on a kept-alive one), the request (the
	// callee may read it, not keep it), and for TraceResponse the status
	// and how many bytes of body go out (none for HEAD).
	N         int
	Request   *Request
	Status    int
	BodyBytes int
}

// traceResponse tells cfg.Trace of a response to r with body bytes: none go
// out for HEAD.
func (s *Server) traceResponse(c *conn, r *Request, status, body int) {
	if r.Method == http.MethodHead {
		body = 0
	}
	s.cfg.Trace(TraceEvent{Kind: TraceResponse, Remote: c.remote, N: c.requests, Request: r, Status: status, BodyBytes: body})
}
