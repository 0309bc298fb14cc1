package worker

import (
	"strconv"

	"demo/eventloop"
	"demo/logs"
)

// trace logs a step of a connection or a request at --log-level trace, as
// Uvicorn does at its trace level (`HTTP connection made`, the ASGI
// messages of each request, `HTTP connection lost`): on the loop, through
// zap, only when that level is on (traceHook leaves the server's hook
// unset otherwise, so the steps cost nothing then).
//
//	127.0.0.1:54321 - HTTP connection made
//	127.0.0.1:54321 - request 1 to the app: GET /healthcheck HTTP/1.1
//	127.0.0.1:54321 - response 1 from the app: 200, 15 bytes of body
//	127.0.0.1:54321 - HTTP connection lost
//
// A request's number counts the requests of its connection, so a kept-alive
// connection's second request says 2.
func (a *app) trace(ev eventloop.TraceEvent) {
	var buf [160]byte
	b := append(buf[:0], ev.Remote...)
	b = append(b, " - "...)
	switch ev.Kind {
	case eventloop.TraceConnMade:
		b = append(b, "HTTP connection made"...)
	case eventloop.TraceConnLost:
		b = append(b, "HTTP connection lost"...)
	case eventloop.TraceRequest:
		b = append(b, "request "...)
		b = strconv.AppendInt(b, int64(ev.N), 10)
		b = append(b, " to the app: "...)
		b = append(append(append(append(append(b, ev.Request.Method...), ' '), ev.Request.Target...), ' '), ev.Request.Proto...)
	case eventloop.TraceResponse:
		b = append(b, "response "...)
		b = strconv.AppendInt(b, int64(ev.N), 10)
		b = append(b, " from the app: "...)
		b = strconv.AppendInt(b, int64(ev.Status), 10)
		b = append(b, ", "...)
		b = strconv.AppendInt(b, int64(ev.BodyBytes), 10)
		b = append(b, " bytes of body"...)
	}
	a.log.Log(logs.TraceLevel, string(b))
}

// traceHook is the server's Trace hook: a.trace when the logger writes
// trace lines, else nil.
func (a *app) traceHook() func(eventloop.TraceEvent) {
	if !a.log.Core().Enabled(logs.TraceLevel) {
		return nil
	}
	return a.trace
}
