package worker

import (
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"demo/contract"
)

// The lines a worker logs per request: uvicorn's access line and the
// article's story (`<id>: started processing`, one `<id> N: <Response
// [200]>` per call, `<id>: finished!`, in the formats package contract
// writes down), plus a log step's lines. They are built by appending into
// reused buffers and written without zap when the logger can, so the hot
// path allocates nothing for them.

// InfoLineWriter writes a plain INFO line itself, cheaper than zap:
// `demo worker`'s console logger can (package logs). WriteInfo must write
// what logger.Named(name).Info(string(msg)) would, or nothing below INFO,
// must not keep msg, and must be safe for concurrent use.
type InfoLineWriter interface {
	WriteInfo(name string, msg []byte)
}

// info logs a plain message, as a.log.Info would, on any goroutine. The
// lines a worker logs per request go through it, so that they skip zap when
// they can: with a.line as the buffer, a line costs no allocation.
func (a *app) info(msg []byte) {
	if a.direct != nil {
		a.direct.WriteInfo(a.log.Name(), msg)
		return
	}
	a.log.Info(string(msg))
}

// infoEvent is info for a line tools read: through zap (--log-format json)
// it carries the event, the request id and the worker's index as fields;
// the direct path, console only, writes the line alone and allocates
// nothing for them.
func (a *app) infoEvent(msg []byte, ev contract.Event, id string) {
	if a.direct != nil {
		a.direct.WriteInfo(a.log.Name(), msg)
		return
	}
	a.log.Info(string(msg), contract.RequestFields(ev, id, a.name))
}

// accessLog logs uvicorn's access line: 127.0.0.1:54321 - "GET / HTTP/1.1" 200.
// The client is the peer, or with ProxyHeaders what a trusted proxy says;
// the path has RootPath in front. Built by appending into a reused
// buffer: this runs once per request. header is nil for a request
// rejected before its header was read.
func (a *app) accessLog(peer, method, target, proto string, status int, header http.Header) {
	client, scheme := peer, "http"
	if a.proxies != nil && header != nil {
		client, scheme = a.proxies.forwarded(peer, header)
	}
	b := append(a.line[:0], client...)
	b = append(b, ` - "`...)
	b = append(b, method...)
	b = append(b, ' ')
	if a.cfg.RootPath != "" && strings.HasPrefix(target, "/") {
		b = appendTarget(b, a.cfg.RootPath)
	}
	b = appendTarget(b, target)
	b = append(b, ' ')
	b = append(b, proto...)
	b = append(b, `" `...)
	a.line = strconv.AppendInt(b, int64(status), 10)
	if a.cfg.StructuredLog {
		a.log.Info(string(a.line), zap.String("client", client), zap.String("scheme", scheme))
		return
	}
	a.info(a.line)
}
