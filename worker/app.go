package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"demo/contract"
	"demo/eventloop"
	"demo/eventloop/client"
)

// Mode decides what GET / does; the other paths stay reachable in every mode.
type Mode string

const (
	// Mixed is `async def` calling `requests`: a blocking call on the loop.
	Mixed Mode = "mixed"
	// Async is `async def` awaiting httpx.AsyncClient: the loop keeps serving.
	Async Mode = "async"
	// Threadpool is a plain `def` endpoint that Starlette runs in a thread pool.
	Threadpool Mode = "threadpool"
)

// Modes lists every mode, in the order help text shows them.
var Modes = []Mode{Mixed, Async, Threadpool}

// ParseMode accepts one of Modes.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("--mode %q: want one of mixed, async, threadpool", s)
}

// Bodies of the hot paths, built once.
var (
	bodyHealthy    = []byte(`{"status":"ok"}`)
	bodyHello      = []byte(`{"message":"hello world"}`)
	bodyNotFound   = []byte(`{"detail":"Not Found"}`)
	bodyNotAllowed = []byte(`{"detail":"Method Not Allowed"}`)
)

const jsonType = "application/json"

// maxExternalBody bounds what a blocking call reads from the external API.
const maxExternalBody = 1 << 20

type handler func(w *eventloop.ResponseWriter, r *eventloop.Request)

// app is the worker's application. Everything in it runs on the loop
// goroutine except the blocking calls handed to the thread pool.
type app struct {
	loop     *eventloop.Loop
	cfg      Config
	log      *zap.Logger
	client   *client.Client
	pool     *semaphore.Weighted
	routes   map[string]route
	draining bool

	status   *statusPipe
	listener *listener // closed at drain if the worker owns it (SO_REUSEPORT)

	served        int  // requests that reached the app
	retirePending bool // Retire is due but the status pipe had no room yet
	srv           *eventloop.Server
	line          []byte // the log line being built (loop goroutine only)
	// direct writes the per-request INFO lines without zap, when the
	// Config offers it (see info); nil otherwise.
	direct InfoLineWriter

	// The detector reports from its own goroutine while the loop is
	// blocked, and from the loop when the stall ends.
	stallMu      sync.Mutex
	culprit      string        // of the stall in progress
	longestStall time.Duration // the worst so far, sent with every Beat
	longestBy    string
}

func newApp(loop *eventloop.Loop, cfg Config, log *zap.Logger, status *statusPipe) *app {
	a := &app{
		loop:   loop,
		cfg:    cfg,
		log:    log,
		client: client.New(loop, client.Config{}),
		pool:   semaphore.NewWeighted(int64(cfg.ThreadpoolSize)),
		status: status,
	}
	a.direct = cfg.InfoLines
	byMode := map[Mode]handler{Mixed: a.mixed, Async: a.async, Threadpool: a.threadpool}
	a.routes = map[string]route{}
	for path, h := range map[string]handler{
		"/healthcheck": a.healthcheck,
		"/":            byMode[cfg.Mode],
		"/mixed":       a.mixed,
		"/all-async":   a.async,
		"/threadpool":  a.threadpool,
	} {
		get, head := "GET "+path, "HEAD "+path
		a.routes[path] = route{h: h, get: &get, head: &head}
	}
	return a
}

func (a *app) serverConfig() eventloop.ServerConfig {
	cfg := eventloop.ServerConfig{
		ServerName:           "demo",
		LimitConcurrency:     a.cfg.LimitConcurrency,
		KeepAliveTimeout:     a.cfg.KeepAliveTimeout,
		RequestHeaderTimeout: a.cfg.RequestHeaderTimeout,
		MaxBodyBytes:         a.cfg.MaxBodyBytes,
		ErrorLog: func(msg string, err error) {
			a.log.Error(msg, zap.Error(err))
		},
	}
	if a.cfg.AccessLog {
		cfg.AccessLog = a.accessLog
	}
	return cfg
}

// accessLog logs uvicorn's access line: 127.0.0.1:54321 - "GET / HTTP/1.1" 200.
// Built by appending into a reused buffer: this runs once per request.
func (a *app) accessLog(remote, method, target, proto string, status int) {
	b := append(a.line[:0], remote...)
	b = append(b, ` - "`...)
	b = append(b, method...)
	b = append(b, ' ')
	b = appendTarget(b, target)
	b = append(b, ' ')
	b = append(b, proto...)
	b = append(b, `" `...)
	a.line = strconv.AppendInt(b, int64(status), 10)
	a.info(a.line)
}

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

// appendIDLine renders `<id><text>`, e.g. `<id>: finished!`.
func appendIDLine(b []byte, id, text string) []byte {
	return append(append(b, id...), text...)
}

// appendCallLine renders an external call's line, `<id> <n>: <Response [<status>]>`.
func appendCallLine(b []byte, id string, n int, status string) []byte {
	b = append(b, id...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ": <Response ["...)
	b = append(b, status...)
	return append(b, "]>"...)
}

// route is a path's handler, with the labels its requests give the loop
// (for the blocked-loop detector) made once, not per request.
type route struct {
	h         handler
	get, head *string
}

// serve routes a request like FastAPI would: 404 and 405 carry its bodies.
func (a *app) serve(w *eventloop.ResponseWriter, r *eventloop.Request) {
	a.countRequest()
	rt, ok := a.routes[r.URL.Path]
	switch {
	case ok && r.Method == http.MethodGet:
		a.loop.AnnotateWith(rt.get)
	case ok && r.Method == http.MethodHead:
		a.loop.AnnotateWith(rt.head)
	default:
		a.loop.Annotate(r.Method + " " + r.URL.Path)
	}
	switch {
	case !ok:
		w.Respond(http.StatusNotFound, jsonType, bodyNotFound)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET")
		w.Respond(http.StatusMethodNotAllowed, jsonType, bodyNotAllowed)
	default:
		rt.h(w, r)
	}
}

func (a *app) healthcheck(w *eventloop.ResponseWriter, _ *eventloop.Request) {
	w.Respond(http.StatusOK, jsonType, bodyHealthy)
}

// mixed calls the external API with a blocking client right here, on the
// loop goroutine, like `requests` inside `async def`: until both calls
// return, this worker accepts, reads and answers nothing else.
func (a *app) mixed(w *eventloop.ResponseWriter, _ *eventloop.Request) {
	id := a.begin(w)
	// Before the loop stops for seconds, what it holds back goes out: the
	// answers to requests pipelined before this one (written once per batch
	// otherwise). blockingCalls flushes the log before each call, so
	// `started processing` appears now, not when the logger's timer fires.
	if a.srv != nil {
		a.srv.Flush()
	}
	err := a.blockingCalls(context.Background(), id)
	a.end(w, id, err)
}

// threadpool runs the same blocking calls on a goroutine holding one of
// ThreadpoolSize slots, like Starlette running a plain `def` endpoint with
// anyio.to_thread: the loop keeps serving, and a request beyond the pool's
// size waits for a slot before it even starts processing.
func (a *app) threadpool(w *eventloop.ResponseWriter, _ *eventloop.Request) {
	id := newRequestID()
	w.Header().Set("X-Request-ID", id)
	ctx := a.loop.Context()
	a.loop.Go(func() {
		if err := a.pool.Acquire(ctx, 1); err != nil {
			return // the worker is exiting; nobody is left to answer
		}
		defer a.pool.Release(1)
		a.info(appendIDLine(nil, id, ": started processing"))
		err := a.blockingCalls(ctx, id)
		a.loop.Post(func() { a.end(w, id, err) })
	})
}

// async awaits each call through the loop's own non-blocking client, like
// httpx.AsyncClient: between the request and the response the loop is free.
func (a *app) async(w *eventloop.ResponseWriter, _ *eventloop.Request) {
	id := a.begin(w)
	var call func(n int)
	call = func(n int) {
		if n > a.cfg.Calls {
			a.end(w, id, nil)
			return
		}
		a.client.Get(a.cfg.External, a.cfg.ExternalTimeout, func(resp *client.Response, err error) {
			if err == nil {
				// httpx prints the reason phrase: <Response [200 OK]>
				a.line = appendCallLine(a.line[:0], id, n, resp.Status)
				a.info(a.line)
				err = statusError(resp.StatusCode)
			}
			if err != nil {
				a.end(w, id, &callError{n: n, err: err})
				return
			}
			call(n + 1)
		})
	}
	call(1)
}

// blockingCalls makes the request's external calls one after the other with
// a blocking client, as `requests` does. It runs on the loop (mixed) or on a
// pool goroutine (threadpool), so it builds its lines in its own buffer.
func (a *app) blockingCalls(ctx context.Context, id string) error {
	var line []byte
	for n := 1; n <= a.cfg.Calls; n++ {
		// The lines logged so far appear before the call blocks, not after.
		_ = a.log.Sync()
		code, err := a.blockingGet(ctx)
		if err == nil {
			// requests prints the bare code: <Response [200]>
			line = appendCallLine(line[:0], id, n, strconv.Itoa(code))
			a.info(line)
			err = statusError(code)
		}
		if err != nil {
			return &callError{n: n, err: err}
		}
	}
	return nil
}

// blockingGet is one `requests.Session().request("GET", ...)`: a fresh
// client and connection per call, read to the end, then dropped.
func (a *app) blockingGet(ctx context.Context) (int, error) {
	// Headers are bounded like the async client's whole response (net/http
	// would read 10 MB of them).
	transport := &http.Transport{DisableKeepAlives: true, Proxy: nil, MaxResponseHeaderBytes: maxExternalBody}
	defer transport.CloseIdleConnections()
	c := &http.Client{Transport: transport, Timeout: a.cfg.ExternalTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.External, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxExternalBody+1)); err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	} else if n > maxExternalBody { // an endless body too: a bad answer, as in async mode
		return 0, fmt.Errorf("response body exceeds the limit of %d bytes", maxExternalBody)
	}
	return resp.StatusCode, nil
}

// begin gives the request its id and logs the article's first line.
func (a *app) begin(w *eventloop.ResponseWriter) string {
	id := newRequestID()
	w.Header().Set("X-Request-ID", id)
	a.loop.Annotate(a.loop.Label() + " (request " + id + ")")
	a.line = appendIDLine(a.line[:0], id, ": started processing")
	a.info(a.line)
	return id
}

// end answers the request: hello world, or 502/504 naming the failed call.
func (a *app) end(w *eventloop.ResponseWriter, id string, err error) {
	if err == nil {
		a.line = appendIDLine(a.line[:0], id, ": finished!")
		a.info(a.line)
		w.Respond(http.StatusOK, jsonType, bodyHello)
		return
	}
	status := http.StatusBadGateway
	if isTimeout(err) {
		status = http.StatusGatewayTimeout
	}
	a.log.Error(fmt.Sprintf("%s: failed: %v", id, err))
	body, _ := json.Marshal(struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}{err.Error(), id})
	w.Respond(status, jsonType, body)
}

// drain stops accepting and lets in-flight requests finish; the loop stops
// once the last connection is gone. An owned SO_REUSEPORT socket closes
// right away (Shutdown has accepted what was queued on it), so the kernel
// sends new connections to the other workers' sockets instead.
func (a *app) drain(srv *eventloop.Server) {
	if a.draining {
		return
	}
	a.draining = true
	st := srv.Stats()
	srv.Shutdown(a.loop.Stop)
	if a.listener != nil {
		a.listener.close()
	}
	a.log.Info(fmt.Sprintf("Shutting down (%d connections, %d requests in flight)", st.Conns, st.InFlight))
}

// heartbeat sends Beat from the loop goroutine and re-arms itself, so the
// beats stop exactly while the loop is blocked: that silence is what the
// master measures. It also retries a Retire the pipe had no room for.
func (a *app) heartbeat() {
	a.sendRetire()
	err := a.status.send(contract.Msg{Kind: contract.Beat, Value: time.Now().UnixNano(), Text: a.loopStats()})
	if err != nil && !errors.Is(err, errPipeFull) { // a full pipe: skip this beat, never wait
		a.log.Debug("heartbeat", zap.Error(err))
	}
	a.loop.AfterFunc(contract.HeartbeatInterval, a.heartbeat)
}

// countRequest counts a request that reached the app and, at
// --limit-max-requests, asks the master for a replacement once. Unlike
// uvicorn, which stops accepting at once, the worker keeps serving until the
// master, with the replacement ready, sends SIGTERM: no request is refused.
func (a *app) countRequest() {
	a.served++
	if a.cfg.MaxRequests > 0 && a.served == a.cfg.MaxRequests && !a.draining {
		a.log.Info(fmt.Sprintf("Maximum request limit of %d reached; asking the master for a replacement", a.cfg.MaxRequests))
		a.retirePending = true
		a.sendRetire()
	}
}

func (a *app) sendRetire() {
	if !a.retirePending || a.draining {
		return
	}
	err := a.status.send(contract.Msg{Kind: contract.Retire, Value: int64(a.served)})
	if errors.Is(err, errPipeFull) {
		return // the next heartbeat tries again: this one must not be lost
	}
	a.retirePending = false
	if err != nil {
		a.log.Warn("could not ask the master for a replacement", zap.Error(err))
	}
}

// callError names which of the request's external calls failed.
type callError struct {
	n   int
	err error
}

func (e *callError) Error() string { return fmt.Sprintf("external API call %d: %v", e.n, e.err) }
func (e *callError) Unwrap() error { return e.err }

func statusError(code int) error {
	if code >= 200 && code < 300 {
		return nil
	}
	return fmt.Errorf("external API answered %d %s", code, http.StatusText(code))
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, client.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout())
}

// newRequestID returns a random (version 4) UUID, as Python's uuid.uuid4(),
// formatted in place rather than through intermediate strings.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// loopStats is the JSON that rides on each Beat.
func (a *app) loopStats() string {
	st := contract.LoopStats{Requests: uint64(a.served)}
	if a.cfg.LogDrops != nil {
		st.LogLinesDropped = a.cfg.LogDrops.Dropped()
	}
	if a.srv != nil {
		s := a.srv.Stats()
		st.InFlight, st.Conns = s.InFlight, s.Conns
	}
	a.stallMu.Lock()
	st.LongestStall, st.Culprit = a.longestStall, a.longestBy
	a.stallMu.Unlock()
	b, _ := json.Marshal(st)
	return string(b)
}

// reportStall logs what the blocked-loop detector sees: a warning as soon as
// a callback passes --slow-callback (the loop is still blocked: it names the
// request and the call it is stuck in), a reminder every few seconds, and
// the total once it ends.
func (a *app) reportStall(s eventloop.Stall) {
	label := s.Label
	if label == "" {
		label = "a loop callback"
	}
	a.stallMu.Lock()
	defer a.stallMu.Unlock()
	// The loop is (or was) blocked: say so now, not when the logger's
	// timer next fires.
	defer a.log.Sync() //nolint:errcheck
	switch {
	case s.Done:
		a.log.Warn(fmt.Sprintf("event loop blocked %s by %s", s.Duration.Round(10*time.Millisecond), label))
		if s.Duration > a.longestStall {
			a.longestStall, a.longestBy = s.Duration, label
			if a.culprit != "" {
				a.longestBy += " at " + a.culprit
			}
		}
		a.culprit = ""
	case s.Culprit != "":
		a.culprit = s.Culprit
		a.log.Warn(fmt.Sprintf("event loop blocked for %s so far by %s at %s", s.Duration.Round(time.Millisecond), label, s.Culprit))
		// The loop cannot beat now; tell the master what holds it.
		_ = a.status.send(contract.Msg{Kind: contract.Stall, Value: int64(s.Duration), Text: label + " at " + s.Culprit})
	default:
		a.log.Warn(fmt.Sprintf("event loop still blocked after %s by %s", s.Duration.Round(100*time.Millisecond), label))
	}
}
