package worker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"demo/appspec"
	"demo/contract"
	"demo/eventloop"
	"demo/eventloop/client"
)

// Mode decides what GET / does in the built-in app; the other paths stay
// reachable in every mode. The list is the contract's.
type Mode = contract.Mode

// The modes, as the contract names them.
const (
	Mixed      = contract.Mixed
	Async      = contract.Async
	Threadpool = contract.Threadpool
)

// ParseMode accepts one of contract.Modes, as --mode.
func ParseMode(s string) (Mode, error) { return appspec.ParseMode(s) }

// Bodies of the hot paths, built once.
var (
	bodyHealthy    = []byte(`{"status":"ok"}`)
	bodyHello      = []byte(`{"message":"hello world"}`)
	bodyNotFound   = []byte(`{"detail":"Not Found"}`)
	bodyNotAllowed = []byte(`{"detail":"Method Not Allowed"}`)
)

const jsonType = "application/json"

// app is the worker's application: the routes of its app file (or of the
// built-in one) and /healthcheck. Everything in it runs on the loop
// goroutine, except `def = "sync"` routes, which run on the thread pool.
type app struct {
	loop     *eventloop.Loop
	cfg      Config
	name     string // "1/2", how log entries name this worker for tools
	log      *zap.Logger
	client   *client.Client
	pool     *semaphore.Weighted
	routes   map[string]*route
	external string // where call = "external" goes: --external, else the file's, else the default
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
	// proxies are the peers whose X-Forwarded-* headers the access log
	// believes (--proxy-headers); nil when off.
	proxies *trustedProxies

	// step is the label of the step the loop is running itself (set
	// around it), for the detector, which reads it from its own goroutine.
	step atomic.Pointer[string]

	// The detector reports from its own goroutine while the loop is
	// blocked, and from the loop when the stall ends.
	stallMu      sync.Mutex
	culprit      string        // of the stall in progress
	culpritStep  string        // the route's step the culprit was caught in, if any
	longestStall time.Duration // the worst so far, sent with every Beat
	longestBy    string

	live liveCounts // the counters, for the lifeline goroutine's Alive
}

// route is a path's endpoint, with the labels its requests give the loop
// (for the blocked-loop detector) made once, not per request.
type route struct {
	method      string // what it answers (a GET route answers HEAD too)
	label, head *string
	health      bool // /healthcheck, answered right away
	spec        *appspec.Route
}

func newApp(loop *eventloop.Loop, cfg Config, spec *appspec.App, log *zap.Logger, status *statusPipe) *app {
	a := &app{
		loop:     loop,
		cfg:      cfg,
		name:     contract.WorkerName(cfg.Index, cfg.Total),
		log:      log,
		client:   client.New(loop, client.Config{}),
		pool:     semaphore.NewWeighted(int64(cfg.ThreadpoolSize)),
		status:   status,
		external: cfg.External,
	}
	if a.external == "" {
		a.external = spec.External
	}
	if a.external == "" {
		a.external = appspec.DefaultExternal
	}
	a.direct = cfg.InfoLines
	if cfg.ProxyHeaders {
		a.proxies, _ = parseTrusted(cfg.ForwardedAllowIPs) // Validate checked it
	}
	health := newRoute(appspec.Healthcheck, http.MethodGet)
	health.health = true
	a.routes = map[string]*route{appspec.Healthcheck: health}
	for i := range spec.Routes {
		r := &spec.Routes[i]
		rt := newRoute(r.Path, r.Method)
		rt.spec = r
		a.routes[r.Path] = rt
	}
	return a
}

func newRoute(path, method string) *route {
	label, head := method+" "+path, "HEAD "+path
	return &route{method: method, label: &label, head: &head}
}

func (a *app) serverConfig() eventloop.ServerConfig {
	cfg := eventloop.ServerConfig{
		ServerName:           "demo",
		LimitConcurrency:     a.cfg.LimitConcurrency,
		KeepAliveTimeout:     a.cfg.KeepAliveTimeout,
		RequestHeaderTimeout: a.cfg.RequestHeaderTimeout,
		RequestBodyTimeout:   a.cfg.RequestBodyTimeout,
		MaxBodyBytes:         a.cfg.MaxBodyBytes,
		MaxBufferedBodyBytes: a.cfg.MaxBufferedBodyBytes,
		NetHTTPParser:        a.cfg.HTTPParser == "net/http",
		MaxHeaderBytes:       a.cfg.MaxHeaderBytes,
		ErrorLog: func(msg string, err error) {
			a.log.Error(msg, zap.Error(err))
		},
	}
	if a.cfg.AccessLog {
		cfg.AccessLog = a.accessLog
	}
	return cfg
}

// serve routes a request like FastAPI would: 404 and 405 carry its bodies.
// It reads only the request's method and path.
func (a *app) serve(w *eventloop.ResponseWriter, r *eventloop.Request) {
	a.countRequest()
	method, path := r.Method, r.URL.Path
	rt := a.routes[path]
	switch {
	case rt == nil:
		a.loop.Annotate(method + " " + path)
		w.Respond(http.StatusNotFound, jsonType, bodyNotFound)
	case method == rt.method:
		a.loop.AnnotateWith(rt.label)
		a.handle(w, rt)
	case method == http.MethodHead && rt.method == http.MethodGet:
		a.loop.AnnotateWith(rt.head)
		a.handle(w, rt)
	default:
		a.loop.Annotate(method + " " + path)
		w.Header().Set("Allow", rt.method)
		w.Respond(http.StatusMethodNotAllowed, jsonType, bodyNotAllowed)
	}
}

// handle runs an endpoint: /healthcheck at once; an `async def` route's
// steps on the loop; a `def` route's whole on the thread pool.
func (a *app) handle(w *eventloop.ResponseWriter, rt *route) {
	if rt.health {
		w.Respond(http.StatusOK, jsonType, bodyHealthy)
		return
	}
	q := a.newRequest(w, rt.spec)
	if rt.spec.Def == appspec.Sync {
		a.onPool(q)
		return
	}
	a.begin(q)
	q.run()
}

// begin gives an async route's request its label and logs the article's
// first line.
func (a *app) begin(q *request) {
	q.label = contract.RequestLabel(a.loop.Label(), q.id)
	a.loop.AnnotateWith(&q.label)
	a.line = contract.AppendStarted(a.line[:0], q.id)
	a.infoEvent(a.line, contract.EventRequestStarted, q.id)
}

// errClientGone ends a request whose client went away before its answer.
var errClientGone = errors.New("the client went away")

// statusClientGone is what the access log shows for such a request
// (nginx's 499, "client closed request"); nobody reads the answer.
const statusClientGone = 499

// end answers the request: hello world, or 502/504 naming the failed call,
// or, to a client that went away, 499 (its calls were cancelled). The
// X-Request-ID header is set here, not when the request begins: a header
// map costs about 400 bytes, which thousands of requests waiting on their
// calls would otherwise each hold all along.
func (a *app) end(w *eventloop.ResponseWriter, id string, err error) {
	w.Header()[requestIDHeader] = []string{id}
	if err == nil {
		a.line = contract.AppendFinished(a.line[:0], id)
		a.infoEvent(a.line, contract.EventRequestFinished, id)
		w.Respond(http.StatusOK, jsonType, bodyHello)
		return
	}
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, errClientGone):
		status = statusClientGone
		a.line = append(append(a.line[:0], id...), ": cancelled, the client went away"...)
		a.info(a.line)
	case isTimeout(err):
		status = http.StatusGatewayTimeout
		fallthrough
	default:
		a.log.Error(fmt.Sprintf("%s: failed: %v", id, err))
	}
	body, _ := json.Marshal(struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}{err.Error(), id})
	w.Respond(status, jsonType, body)
}

// requestIDHeader is X-Request-ID in the canonical form a header map's
// keys take, so setting it does not canonicalise it again per request.
const requestIDHeader = "X-Request-Id"

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
