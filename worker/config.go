package worker

import (
	"strings"
	"time"

	"go.uber.org/zap"

	"demo/appspec"
	"demo/setting"
)

// Config is what `demo worker` takes; the master builds it from `demo
// serve`'s flags. Start from DefaultConfig: every setting must be given
// (Validate refuses a zero where zero would mean nothing sensible), so a
// value the user typed is never silently swapped for a default.
type Config struct {
	Index, Total int // 1-based position among the master's workers
	// AppFile is the app file the worker serves (read when it starts, so a
	// SIGHUP restart picks up changes); "" serves the built-in app, made
	// of Mode (what GET / does) and Calls (external calls per request).
	AppFile         string
	Mode            Mode
	Calls           int
	External        string // base URL of the slow external API; "" takes the app file's, else the default
	ExternalTimeout time.Duration
	ThreadpoolSize  int
	AccessLog       bool
	Logger          *zap.Logger
	// StructuredLog says Logger keeps fields apart from the message (the
	// JSON format): the access line then also carries the client and the
	// scheme as fields. The console line stays uvicorn's.
	StructuredLog bool
	// InfoLines, when set, writes the plain INFO lines logged per request
	// (article lines, access log) cheaper than Logger would, to the same
	// place; main sets it from package logs. Nil means Logger.
	InfoLines InfoLineWriter
	// LogDrops, when set, counts the log lines the process dropped
	// because stderr was not being read (package logs' Logger does); the
	// count rides on every Beat.
	LogDrops interface{ Dropped() uint64 }

	// Server limits (eventloop.ServerConfig).
	LimitConcurrency     int           // > 0: 503 beyond this many connections or requests in flight
	KeepAliveTimeout     time.Duration // idle connections, brand new ones included
	RequestHeaderTimeout time.Duration // a begun header must complete within it, or 408
	RequestBodyTimeout   time.Duration // a body must complete within it of its header, or 408
	MaxBodyBytes         int64         // larger bodies get 413
	MaxBufferedBodyBytes int64         // bodies being received, summed over connections; past it 503
	// HTTPParser is "demo", the server's own request parser (net/http's
	// for what it leaves), or "net/http": net/http's ReadRequest for every
	// request, the reference the other is fuzzed against, to compare.
	HTTPParser     string
	MaxHeaderBytes int // a larger header block gets 431 (h11's max incomplete event size)

	// ProxyHeaders takes the client's address and scheme from
	// X-Forwarded-For and X-Forwarded-Proto when the peer is one of
	// ForwardedAllowIPs: comma-separated addresses, CIDR networks,
	// literals (`unix` for a unix-socket peer) or `*` (uvicorn's
	// --forwarded-allow-ips).
	ProxyHeaders      bool
	ForwardedAllowIPs string
	// RootPath is the path prefix a proxy mounts the app under and strips
	// before forwarding (ASGI's root_path): the access log shows it in
	// front of each path, as uvicorn does; routing ignores it.
	RootPath string

	// SlowCallback, when > 0, turns on the blocked-loop detector: a loop
	// callback running longer is logged while it still runs, with the
	// request it serves and the call it is stuck in (asyncio's debug mode
	// threshold is 100ms).
	SlowCallback time.Duration

	// MaxRequests, when > 0, is this worker's share of --limit-max-requests
	// (jitter already added by the master): after serving that many requests
	// it sends contract.Retire once and keeps serving until SIGTERM.
	MaxRequests int

	// ReusePortAddr, when set (host:port with a concrete port), makes the
	// worker bind its own SO_REUSEPORT socket there with Backlog instead of
	// accepting on the inherited fd 3.
	ReusePortAddr string
	Backlog       int

	// EpollExclusive: wait on the shared socket with EPOLLEXCLUSIVE, so a
	// new connection wakes one idle worker instead of all of them.
	EpollExclusive bool
}

// DefaultConfig is a worker as `demo serve` starts it with no flags:
// Uvicorn's defaults where Uvicorn has the setting.
func DefaultConfig() Config {
	return Config{
		Index: 1, Total: 1,
		Mode:                 Mixed,
		Calls:                2,
		External:             appspec.DefaultExternal,
		ExternalTimeout:      appspec.DefaultCallTimeout,
		ThreadpoolSize:       40, // Starlette's (anyio's) thread limiter
		AccessLog:            true,
		KeepAliveTimeout:     5 * time.Second,
		RequestHeaderTimeout: 10 * time.Second,
		RequestBodyTimeout:   30 * time.Second,
		MaxBodyBytes:         1 << 20,
		MaxBufferedBodyBytes: 64 << 20,
		HTTPParser:           "demo",
		MaxHeaderBytes:       16 << 10, // h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
		ProxyHeaders:         true,
		ForwardedAllowIPs:    "127.0.0.1",
		SlowCallback:         100 * time.Millisecond,
		Backlog:              2048,
	}
}

// Validate checks what can be checked before anything starts. Its errors
// are *setting.Error naming the Config field. The built-in app's Mode and
// Calls are appspec's to check (LoadApp).
func (c *Config) Validate() error {
	if c.External != "" || c.AppFile == "" {
		if err := appspec.CheckURL(c.External); err != nil {
			return setting.Errorf("External", "%v", err)
		}
	}
	switch {
	case c.Index < 1 || c.Index > c.Total:
		return setting.Errorf("Index", "must be 1 to %d, got %d", c.Total, c.Index)
	case c.ExternalTimeout <= 0:
		return setting.Errorf("ExternalTimeout", "must be positive, got %v", c.ExternalTimeout)
	case c.ThreadpoolSize < 1:
		return setting.Errorf("ThreadpoolSize", "must be at least 1, got %d", c.ThreadpoolSize)
	case c.LimitConcurrency < 0:
		return setting.Errorf("LimitConcurrency", "must be 0 (off) or more, got %d", c.LimitConcurrency)
	case c.KeepAliveTimeout <= 0:
		return setting.Errorf("KeepAliveTimeout", "must be positive, got %v", c.KeepAliveTimeout)
	case c.RequestHeaderTimeout <= 0:
		return setting.Errorf("RequestHeaderTimeout", "must be positive, got %v", c.RequestHeaderTimeout)
	case c.HTTPParser != "demo" && c.HTTPParser != "net/http":
		return setting.Errorf("HTTPParser", "must be demo or net/http, got %q", c.HTTPParser)
	case c.RequestBodyTimeout <= 0:
		return setting.Errorf("RequestBodyTimeout", "must be positive, got %v", c.RequestBodyTimeout)
	case c.MaxBufferedBodyBytes < 1:
		return setting.Errorf("MaxBufferedBodyBytes", "must be at least 1 byte, got %d", c.MaxBufferedBodyBytes)
	case c.MaxBodyBytes < 1:
		return setting.Errorf("MaxBodyBytes", "must be at least 1 byte, got %d", c.MaxBodyBytes)
	case c.MaxHeaderBytes < minHeaderBytes:
		return setting.Errorf("MaxHeaderBytes", "must be at least %d bytes (a request line and a Host header), got %d", minHeaderBytes, c.MaxHeaderBytes)
	case c.SlowCallback < 0:
		return setting.Errorf("SlowCallback", "must be 0 (off) or more, got %v", c.SlowCallback)
	case c.MaxRequests < 0:
		return setting.Errorf("MaxRequests", "must be 0 (off) or more, got %d", c.MaxRequests)
	case c.ReusePortAddr != "" && c.Backlog < 1:
		return setting.Errorf("Backlog", "must be at least 1, got %d", c.Backlog)
	case c.RootPath != "" && !strings.HasPrefix(c.RootPath, "/"):
		return setting.Errorf("RootPath", "%q: want a path that starts with /, e.g. /api", c.RootPath)
	case strings.ContainsAny(c.RootPath, "?# \t"):
		return setting.Errorf("RootPath", "%q: want a path, without a query, fragment or spaces", c.RootPath)
	}
	if _, err := parseTrusted(c.ForwardedAllowIPs); err != nil {
		return setting.Errorf("ForwardedAllowIPs", "%v", err)
	}
	return nil
}

// minHeaderBytes is the smallest header limit worth serving with: below it
// even `GET / HTTP/1.1` with a Host header gets 431.
const minHeaderBytes = 64
