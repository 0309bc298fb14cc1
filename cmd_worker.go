package main

import (
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"demo/logs"
	"demo/worker"
)

// `demo worker INDEX/TOTAL ...` is one worker process, started by serve,
// never by hand. This file is both ends of its command line: serve builds
// it (workerCommandLine) from a worker.Config, the worker parses it back
// (workerConfig) into the same Config. workerSettings is the one table
// both ends, and the error messages, go by.

// workerSettings pairs each worker.Config field that travels on a worker's
// command line with its flag.
var workerSettings = []struct{ field, flag string }{
	{"AppFile", "app"},
	{"Mode", "mode"},
	{"External", "external"},
	{"Calls", "calls"},
	{"ExternalTimeout", "external-timeout"},
	{"ThreadpoolSize", "threadpool-size"},
	{"AccessLog", "access-log"},
	{"LimitConcurrency", "limit-concurrency"},
	{"KeepAliveTimeout", "timeout-keep-alive"},
	{"RequestHeaderTimeout", "timeout-request-header"},
	{"RequestBodyTimeout", "timeout-request-body"},
	{"MaxBodyBytes", "limit-request-body"},
	{"MaxBufferedBodyBytes", "limit-request-body-total"},
	{"HTTPParser", "http-parser"},
	{"MaxHeaderBytes", "h11-max-incomplete-event-size"},
	{"ProxyHeaders", "proxy-headers"},
	{"ForwardedAllowIPs", "forwarded-allow-ips"},
	{"RootPath", "root-path"},
	{"SlowCallback", "slow-callback"},
	{"MaxRequests", "limit-max-requests"},
	{"EpollExclusive", "epoll-exclusive"},
	// Set by serve itself, from its socket, not from a flag of the same name.
	{"ReusePortAddr", "reuse-port-bind"},
	{"Backlog", "backlog"},
}

// serveSetsItself are the workerSettings serve does not read from its own
// flags of the same name.
var serveSetsItself = map[string]bool{"reuse-port-bind": true, "backlog": true}

// workerLocal are the worker.Config fields that never travel: the
// position is the INDEX/TOTAL argument, the rest are made in the process.
var workerLocal = []string{"Index", "Total", "Logger", "StructuredLog", "InfoLines", "LogDrops"}

// workerSharedFlags are the flags serve and worker both have: the app and
// each worker's server settings. Their defaults are worker.DefaultConfig's.
func workerSharedFlags() []cli.Flag {
	def := worker.DefaultConfig()
	return []cli.Flag{
		&cli.StringFlag{Name: "app", Category: catApp, Usage: "serve the routes described in the app `FILE` (see `demo app example`) instead of the built-in app"},
		&cli.StringFlag{Name: "mode", Value: string(def.Mode), Category: catApp, Usage: "built-in app: what GET / does: mixed (blocking call inside the event loop), async (non-blocking calls), threadpool (blocking calls on a thread pool)"},
		&cli.StringFlag{Name: "external", Value: def.External, Category: catApp, Usage: "base URL of the slow external API (overrides the app file's external = ...)"},
		&cli.IntFlag{Name: "calls", Value: def.Calls, Category: catApp, Usage: "built-in app: sequential external API calls per request"},
		&cli.DurationFlag{Name: "external-timeout", Value: def.ExternalTimeout, Category: catApp, Usage: "timeout of each external API call without a timeout of its own (the article's timeout=2000, in seconds)"},
		&cli.IntFlag{Name: "threadpool-size", Value: def.ThreadpoolSize, Category: catApp, Usage: "the thread pool that runs plain def routes (threadpool mode): how many may run at once (Starlette's default is 40)"},
		&cli.BoolFlag{Name: "access-log", Value: def.AccessLog, Category: catLogs, Usage: "log one line per request (--access-log=false or --no-access-log: off)"},
		&cli.IntFlag{Name: "limit-concurrency", Value: def.LimitConcurrency, Category: catLimits, Usage: "per worker: answer 503 to a request arriving while more than N connections are open or N requests are in flight (0 = no limit)"},
		&cli.DurationFlag{Name: "timeout-keep-alive", Aliases: []string{"keep-alive"}, Value: def.KeepAliveTimeout, Category: catLimits, Usage: "close a connection that has sent no request for this long, a brand new one included"},
		&cli.DurationFlag{Name: "timeout-request-header", Value: def.RequestHeaderTimeout, Category: catLimits, Usage: "answer 408 and close when a request's header is not complete this long after its first byte, so slow clients (slowloris) cannot pin connections"},
		&cli.DurationFlag{Name: "timeout-request-body", Value: def.RequestBodyTimeout, Category: catLimits, Usage: "answer 408 and close when a request's body is not complete this long after its header, so a body dripped a byte at a time cannot pin a connection"},
		&cli.Int64Flag{Name: "limit-request-body", Value: def.MaxBodyBytes, Category: catLimits, Usage: "largest request body in bytes; a larger one gets 413"},
		&cli.StringFlag{Name: "http-parser", Value: def.HTTPParser, Hidden: true, Category: catLimits, Usage: "demo (the server's own request parser) or net/http (net/http's ReadRequest for every request: the reference the other is fuzzed against), to compare the two on one binary"},
		&cli.Int64Flag{Name: "limit-request-body-total", Value: def.MaxBufferedBodyBytes, Category: catLimits, Usage: "per worker: bytes that request bodies still being received may hold, summed over all connections; the request that would pass it gets 503"},
		&cli.IntFlag{Name: "h11-max-incomplete-event-size", Value: def.MaxHeaderBytes, Category: catLimits, Usage: "largest request header block in bytes (uvicorn's name for h11's limit); a larger one gets 431"},
		&cli.IntFlag{Name: "limit-max-requests", Aliases: []string{"max-requests"}, Value: def.MaxRequests, Category: catWorkers, Usage: "recycle a worker after it served about N requests: a replacement starts first, so no request fails (0 = never)"},
		&cli.BoolFlag{Name: "epoll-exclusive", Value: def.EpollExclusive, Category: catSocket, Usage: "workers wait on the shared socket with EPOLLEXCLUSIVE: a new connection wakes one idle worker instead of all of them, and each wake-up accepts one connection (default: every worker wakes, and the first takes up to 100 queued connections, as asyncio does)"},
		&cli.BoolFlag{Name: "proxy-headers", Value: def.ProxyHeaders, Category: catProxy, Usage: "take the client's address and scheme (in the access log) from X-Forwarded-For and X-Forwarded-Proto, when the peer is one of --forwarded-allow-ips"},
		&cli.StringFlag{Name: "forwarded-allow-ips", Value: def.ForwardedAllowIPs, Category: catProxy, Usage: "comma-separated `ADDRESSES` of the proxies whose X-Forwarded-* headers are believed: IPs, networks (10.0.0.0/8), unix (a --uds peer) or * (anyone)"},
		&cli.StringFlag{Name: "root-path", Value: def.RootPath, Category: catProxy, Usage: "the `PATH` a proxy mounts the app under and strips (ASGI's root_path): the access log shows it before each path"},
		&cli.DurationFlag{Name: "slow-callback", Value: def.SlowCallback, Category: catLogs, Usage: "log a loop callback (a request's handler) running longer than this while it still blocks the loop, naming the request and the call it is stuck in (asyncio's debug threshold; 0 = off)"},
	}
}

func workerCommand() *cli.Command {
	def := worker.DefaultConfig()
	flags := append(workerSharedFlags(),
		&cli.StringFlag{Name: "reuse-port-bind", Usage: "HOST:PORT to bind with SO_REUSEPORT instead of accepting on fd 3"},
		&cli.IntFlag{Name: "backlog", Value: def.Backlog, Usage: "listen backlog of the --reuse-port-bind socket"},
	)
	return &cli.Command{
		Name:      "worker",
		Usage:     "one worker process (started by serve, never by hand)",
		ArgsUsage: "INDEX/TOTAL",
		Hidden:    true,
		Flags:     append(flags, logFlags()...),
		Action:    runWorker,
	}
}

// logSettings are the log flags a worker gets from serve.
type logSettings struct{ level, format string }

// workerCommandLine is the command line serve starts a worker with — what ps
// shows: `demo worker 2/4 --mode mixed ...`. It carries every setting of
// cfg that differs from worker.DefaultConfig, and always the mode (or the
// app file), so ps says what each worker runs.
func workerCommandLine(cfg worker.Config, l logSettings) []string {
	argv := []string{"demo", "worker", fmt.Sprintf("%d/%d", cfg.Index, cfg.Total)}
	def := reflect.ValueOf(worker.DefaultConfig())
	v := reflect.ValueOf(cfg)
	for _, s := range workerSettings {
		value, defValue := v.FieldByName(s.field), def.FieldByName(s.field)
		always := (s.field == "Mode" && cfg.AppFile == "") || (s.field == "AppFile" && cfg.AppFile != "")
		if !always && value.Equal(defValue) {
			continue
		}
		if cfg.AppFile != "" && (s.field == "Mode" || s.field == "Calls" || (s.field == "External" && cfg.External == "")) {
			continue // the file says what each route does, and where it calls
		}
		if value.Kind() == reflect.Bool {
			argv = append(argv, "--"+s.flag+"="+strconv.FormatBool(value.Bool()))
			continue
		}
		argv = append(argv, "--"+s.flag, flagText(value))
	}
	if l.level != "info" {
		argv = append(argv, "--log-level", l.level)
	}
	if l.format != "console" {
		argv = append(argv, "--log-format", l.format)
	}
	return argv
}

// flagText is a Config value as its flag takes it.
func flagText(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	return fmt.Sprint(v.Interface())
}

// workerConfig reads the worker settings of c's flags (but for those in
// skip), starting from worker.DefaultConfig. worker.Config.Validate owns
// the rules; the caller checks with it, and settingError says which flag
// broke one.
func workerConfig(c *cli.Context, skip map[string]bool) (worker.Config, error) {
	cfg := worker.DefaultConfig()
	v := reflect.ValueOf(&cfg).Elem()
	for _, s := range workerSettings {
		if skip[s.flag] || lookupFlag(c, s.flag) == nil {
			continue
		}
		field := v.FieldByName(s.field)
		switch field.Interface().(type) {
		case time.Duration:
			field.SetInt(int64(c.Duration(s.flag)))
		case bool:
			field.SetBool(c.Bool(s.flag))
		case int:
			field.SetInt(int64(c.Int(s.flag)))
		case int64:
			field.SetInt(c.Int64(s.flag))
		default: // strings, worker.Mode
			field.SetString(c.String(s.flag))
		}
	}
	if c.Bool("no-access-log") {
		cfg.AccessLog = false
	}
	if c.Bool("no-proxy-headers") {
		cfg.ProxyHeaders = false
	}
	cfg.StructuredLog = c.String("log-format") == string(logs.JSON)
	if cfg.AppFile != "" {
		for _, name := range []string{"mode", "calls"} {
			if c.IsSet(name) {
				return cfg, badFlag("%s is for the built-in app; with --app, the file says what each route does", source(c, name))
			}
		}
		if !c.IsSet("external") {
			cfg.External = "" // the file's, else the default
		}
	}
	return cfg, nil
}

// parseWorkerPosition reads a worker's INDEX/TOTAL argument.
func parseWorkerPosition(arg string) (index, total int, err error) {
	i, n, ok := strings.Cut(arg, "/")
	index, err1 := strconv.Atoi(i)
	total, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, badFlag("bad worker INDEX/TOTAL %q", arg)
	}
	return index, total, nil
}

func runWorker(c *cli.Context) error {
	serving()
	// A worker lives in a process group of its own, in the background of
	// the terminal: where `stty tostop` is set, its first log line would
	// stop it with SIGTTOU. Ignored, the write goes through (POSIX).
	signal.Ignore(syscall.SIGTTOU)
	index, total, err := parseWorkerPosition(c.Args().First())
	if err != nil {
		return err
	}
	logger, err := newLogger(c, fmt.Sprintf("worker-%d[%d]", index, os.Getpid()), workerLogBatch)
	if err != nil {
		return err
	}
	defer logger.Close()
	cfg, err := workerConfig(c, nil)
	if err != nil {
		return err
	}
	cfg.Index, cfg.Total = index, total
	if err := cfg.Validate(); err != nil {
		return settingError(c, err)
	}
	cfg.Logger = logger.Logger
	cfg.InfoLines = logger.InfoLines()
	cfg.LogDrops = logger
	return worker.Run(cfg)
}
