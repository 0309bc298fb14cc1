// Command demo reproduces, for real, how Uvicorn serves a Python app: a
// master process holding one listening socket and N worker processes, each
// running one single-goroutine event loop. It shows why blocking code inside
// an event loop hurts, and why more workers only hide it.
//
// main.go is the only place that knows every role: it parses the command
// line and hands each role (supervisor, worker, external) its config.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"demo/appspec"
	"demo/contract"
	"demo/external"
	"demo/worker"
)

// Exit codes, documented in the README.
const (
	exitError = 1 // a runtime failure: port in use, a worker that cannot boot, a forced shutdown
	exitUsage = 2 // bad flags, or `demo worker` run by hand
)

func main() {
	app := newApp()
	if err := app.Run(workerArgsFirst(os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var coder cli.ExitCoder
	var startup *worker.StartupError
	switch {
	case errors.As(err, &coder):
		return coder.ExitCode()
	case errors.As(err, &startup):
		return contract.ExitStartupFailure
	case errors.Is(err, worker.ErrNotStartedByMaster):
		return exitUsage
	}
	return exitError
}

// usageError turns a flag-parsing failure into one line and exit code 2,
// instead of urfave/cli's default of printing the whole help text.
func usageError(c *cli.Context, err error, _ bool) error {
	return cli.Exit(fmt.Sprintf("%v (see '%s --help')", err, c.Command.HelpName), exitUsage)
}

// serving is the first thing a serving role does (master, worker,
// external API, baseline): a reader of its stdout or stderr that goes away
// (`demo serve 2>&1 | head`) must not kill it, so writes fail with EPIPE
// instead, which the logs take as "logging is off". The Go runtime raises
// SIGPIPE for writes to fds 1 and 2 unless it is ignored. The reporting
// commands (status, experiment, bench) keep the default: `| head` ends them.
func serving() { signal.Ignore(syscall.SIGPIPE) }

func badFlag(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}

// Flags shared by serve and the worker it starts: the app's behaviour.
func appFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "app", Usage: "serve the routes described in the app `FILE` (see `demo app example`) instead of the built-in app"},
		&cli.StringFlag{Name: "mode", Value: string(worker.Mixed), Usage: "built-in app: what GET / does: mixed (blocking call inside the event loop), async (non-blocking calls), threadpool (blocking calls on a thread pool)"},
		&cli.StringFlag{Name: "external", Value: appspec.DefaultExternal, Usage: "base URL of the slow external API (overrides the app file's external = ...)"},
		&cli.IntFlag{Name: "calls", Value: 2, Usage: "built-in app: sequential external API calls per request"},
		&cli.DurationFlag{Name: "external-timeout", Value: appspec.DefaultCallTimeout, Usage: "timeout of each external API call without a timeout of its own (the article's timeout=2000)"},
		&cli.IntFlag{Name: "threadpool-size", Value: 40, Usage: "the thread pool that runs plain def routes (threadpool mode): how many may run at once (Starlette's default is 40)"},
	}
}

// Per-worker server limits, shared by serve and the worker it starts. serve
// passes on only those the user set, so a worker's ps line stays short.
func limitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "limit-concurrency", Usage: "per worker: answer 503 to a request arriving while more than N connections are open or N requests are in flight (0 = no limit)"},
		&cli.DurationFlag{Name: "timeout-keep-alive", Value: 5 * time.Second, Usage: "close a connection that has sent no request for this long, a brand new one included"},
		&cli.DurationFlag{Name: "timeout-request-header", Value: 10 * time.Second, Usage: "answer 408 and close when a request's header is not complete this long after its first byte, so slow clients (slowloris) cannot pin connections"},
		&cli.Int64Flag{Name: "limit-request-body", Value: 1 << 20, Usage: "largest request body in bytes; a larger one gets 413"},
		&cli.DurationFlag{Name: "slow-callback", Value: 100 * time.Millisecond, Usage: "log a loop callback (a request's handler) running longer than this while it still blocks the loop, naming the request and the call it is stuck in (asyncio's debug threshold; 0 = off)"},
	}
}

var limitFlagNames = []string{"limit-concurrency", "timeout-keep-alive", "timeout-request-header", "limit-request-body", "slow-callback"}

// Flags every command takes: logging.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warning or error"},
		&cli.StringFlag{Name: "log-format", Value: "console", Usage: "console or json"},
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:            "demo",
		Usage:           "see why blocking code inside an event loop hurts, with real processes",
		HideHelpCommand: true,
		OnUsageError:    usageError,
		// main prints the error and picks the exit code; urfave/cli would
		// otherwise call os.Exit itself for cli.Exit errors.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			experimentCommand(),
			{
				Name:         "serve",
				Usage:        "run the app: a master holding the socket and --workers event-loop workers",
				Description:  "Like `uvicorn app.application:app --workers N`. The built-in app's paths: / (per --mode), /mixed, /all-async,\n/threadpool, /healthcheck. --app FILE serves your own routes instead (see `demo app`).",
				Flags:        serveFlags(),
				OnUsageError: usageError,
				Action:       serve,
			},
			{
				Name:         "external",
				Usage:        "run the slow external API: GET / answers after --delay",
				Description:  "Like the article's `uvicorn external_api:app --port 8888`.",
				OnUsageError: usageError,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to bind"},
					&cli.IntFlag{Name: "port", Value: 8888, Usage: "port to bind (0 picks a free one)"},
					&cli.DurationFlag{Name: "delay", Value: 20 * time.Second, Usage: "how long each request waits before its answer"},
					&cli.IntFlag{Name: "listeners", Value: external.DefaultListeners, Usage: "SO_REUSEPORT sockets sharing the port, each with its own accept queue, so a burst of thousands of connections is not dropped"},
					&cli.IntFlag{Name: "backlog", Value: external.DefaultBacklog, Usage: "listen backlog of each socket (the kernel caps it at net.core.somaxconn)"},
					&cli.StringFlag{Name: "fault", Usage: "misbehave on purpose: refuse (reset each connection at once), hang (read the request, never answer), garbage (answer bytes that are not HTTP), reset (headers, part of the body, then a reset), endless-body (200 with a body that never ends), drip (a 200 answer, one byte per second) or status-500; all but refuse and hang after --delay"},
					&cli.Float64Flag{Name: "fault-rate", Value: 1, Usage: "share of connections (0-1) that get --fault, spread evenly: 0.5 fails every second one"},
				}, logFlags()...),
				Action: runExternal,
			},
			appCommand(),
			statusCommand(),
			benchCommand(),
			baselineCommand(),
			{
				Name:         "worker",
				Usage:        "one worker process (started by serve, never by hand)",
				ArgsUsage:    "INDEX/TOTAL",
				Hidden:       true,
				OnUsageError: usageError,
				Flags: append(append(append([]cli.Flag{
					&cli.BoolFlag{Name: "access-log", Value: true},
					&cli.IntFlag{Name: "limit-max-requests", Usage: "ask for a replacement after exactly N requests (0 = never)"},
					&cli.StringFlag{Name: "reuse-port-bind", Usage: "HOST:PORT to bind with SO_REUSEPORT instead of accepting on fd 3"},
					&cli.IntFlag{Name: "backlog", Value: 2048, Usage: "listen backlog of the --reuse-port-bind socket"},
					&cli.BoolFlag{Name: "epoll-exclusive", Usage: "wait on fd 3 with EPOLLEXCLUSIVE"},
				}, appFlags()...), limitFlags()...), logFlags()...),
				Action: runWorker,
			},
		},
	}
}

// workerArgsFirst lets the worker's index come first on its command line
// (`demo worker 2/4 --mode mixed ...`, what ps shows) although urfave/cli
// stops parsing flags at the first positional argument.
func workerArgsFirst(args []string) []string {
	if len(args) < 3 || args[1] != "worker" || strings.HasPrefix(args[2], "-") {
		return args
	}
	out := append([]string{}, args[:2]...)
	out = append(out, args[3:]...)
	return append(out, args[2])
}

// workerConfig reads the app flags shared by serve and worker.
func workerConfig(c *cli.Context, logger *zap.Logger) (worker.Config, error) {
	mode, err := worker.ParseMode(c.String("mode"))
	if err != nil {
		return worker.Config{}, badFlag("%v", err)
	}
	cfg := worker.Config{
		AppFile:              c.String("app"),
		Mode:                 mode,
		External:             c.String("external"),
		Calls:                c.Int("calls"),
		ExternalTimeout:      c.Duration("external-timeout"),
		ThreadpoolSize:       c.Int("threadpool-size"),
		AccessLog:            c.Bool("access-log") && !c.Bool("no-access-log"),
		Logger:               logger,
		Index:                1,
		Total:                1,
		LimitConcurrency:     c.Int("limit-concurrency"),
		KeepAliveTimeout:     c.Duration("timeout-keep-alive"),
		RequestHeaderTimeout: c.Duration("timeout-request-header"),
		MaxBodyBytes:         c.Int64("limit-request-body"),
		SlowCallback:         c.Duration("slow-callback"),
		MaxRequests:          c.Int("limit-max-requests"),
	}
	if cfg.AppFile != "" {
		for _, name := range []string{"mode", "calls"} {
			if c.IsSet(name) {
				return worker.Config{}, badFlag("--%s is for the built-in app; with --app, the file says what each route does", name)
			}
		}
		if !c.IsSet("external") {
			cfg.External = "" // the file's, else the default
		}
	}
	// Zero would silently mean "the default" inside the worker: refuse it.
	switch {
	case cfg.KeepAliveTimeout <= 0:
		return worker.Config{}, badFlag("--timeout-keep-alive must be positive, got %v", cfg.KeepAliveTimeout)
	case cfg.RequestHeaderTimeout <= 0:
		return worker.Config{}, badFlag("--timeout-request-header must be positive, got %v", cfg.RequestHeaderTimeout)
	case cfg.SlowCallback < 0:
		return worker.Config{}, badFlag("--slow-callback must not be negative")
	case cfg.MaxBodyBytes < 1:
		return worker.Config{}, badFlag("--limit-request-body must be at least 1 byte, got %d", cfg.MaxBodyBytes)
	}
	if err := cfg.Validate(); err != nil {
		return worker.Config{}, badFlag("%v", err)
	}
	return cfg, nil
}

func runWorker(c *cli.Context) error {
	serving()
	// A worker lives in a process group of its own, in the background of
	// the terminal: where `stty tostop` is set, its first log line would
	// stop it with SIGTTOU. Ignored, the write goes through (POSIX).
	signal.Ignore(syscall.SIGTTOU)
	if c.NArg() != 1 {
		return badFlag("demo worker takes one INDEX/TOTAL argument")
	}
	i, n, ok := strings.Cut(c.Args().First(), "/")
	index, err := strconv.Atoi(i)
	total := 0
	if err == nil {
		total, err = strconv.Atoi(n)
	}
	if !ok || err != nil || index < 1 || index > total {
		return badFlag("bad worker INDEX/TOTAL %q", c.Args().First())
	}
	logger, err := newLogger(c, fmt.Sprintf("worker-%d[%d]", index, os.Getpid()), workerLogBatch)
	if err != nil {
		return err
	}
	defer logger.Close()
	cfg, err := workerConfig(c, logger.Logger)
	if err != nil {
		return err
	}
	cfg.Index, cfg.Total = index, total
	cfg.ReusePortAddr = c.String("reuse-port-bind")
	cfg.Backlog = c.Int("backlog")
	cfg.EpollExclusive = c.Bool("epoll-exclusive")
	cfg.InfoLines = logger.InfoLines()
	cfg.LogDrops = logger
	return worker.Run(cfg)
}

func runExternal(c *cli.Context) error {
	serving()
	logger, err := newLogger(c, "external", 0)
	if err != nil {
		return err
	}
	defer logger.Close()
	port, delay := c.Int("port"), c.Duration("delay")
	if port < 0 || port > 65535 {
		return badFlag("--port must be 0-65535, got %d", port)
	}
	if delay < 0 {
		return badFlag("--delay must not be negative")
	}
	if c.Int("listeners") < 1 || c.Int("backlog") < 1 {
		return badFlag("--listeners and --backlog must be at least 1")
	}
	cfg := external.Config{Delay: delay, Logger: logger.Logger, Fault: external.Fault(c.String("fault")), FaultRate: c.Float64("fault-rate")}
	if c.IsSet("fault-rate") && cfg.Fault == "" {
		return badFlag("--fault-rate needs --fault")
	}
	if err := cfg.Validate(); err != nil {
		return badFlag("%v", err)
	}
	lns, err := external.Listen(c.String("host"), port, c.Int("listeners"), c.Int("backlog"))
	if err != nil {
		return fmt.Errorf("external api: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return external.Serve(ctx, lns, cfg)
}
