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
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"demo/contract"
	"demo/external"
	"demo/supervisor"
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

func badFlag(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}

// Flags shared by serve and the worker it starts: the app's behaviour.
func appFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mode", Value: string(worker.Mixed), Usage: "what GET / does: mixed (blocking call inside the event loop), async (non-blocking calls), threadpool (blocking calls on a thread pool)"},
		&cli.StringFlag{Name: "external", Value: "http://localhost:8888", Usage: "base URL of the slow external API"},
		&cli.IntFlag{Name: "calls", Value: 2, Usage: "sequential external API calls per request"},
		&cli.DurationFlag{Name: "external-timeout", Value: 2000 * time.Second, Usage: "timeout of each external API call (the article's timeout=2000)"},
		&cli.IntFlag{Name: "threadpool-size", Value: 40, Usage: "threadpool mode: blocking calls that may run at once (Starlette's default is 40)"},
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
	}
}

var limitFlagNames = []string{"limit-concurrency", "timeout-keep-alive", "timeout-request-header", "limit-request-body"}

// Flags every command takes: logging.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warning or error"},
		&cli.StringFlag{Name: "log-format", Value: "console", Usage: "console or json"},
	}
}

func newApp() *cli.App {
	serveFlags := []cli.Flag{
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to bind"},
		&cli.IntFlag{Name: "port", Value: 8000, Usage: "port to bind (0 picks a free one)"},
		&cli.IntFlag{Name: "workers", Value: 1, Usage: "worker processes, each with one event loop"},
		&cli.IntFlag{Name: "backlog", Value: 2048, Usage: "listen backlog: connections the kernel queues while no worker accepts"},
		&cli.DurationFlag{Name: "timeout-graceful-shutdown", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long in-flight requests may finish before workers are killed"},
		&cli.BoolFlag{Name: "access-log", Value: true, Usage: "log one line per request"},
		&cli.BoolFlag{Name: "no-access-log", Usage: "disable the access log"},
		&cli.IntFlag{Name: "limit-max-requests", Usage: "recycle a worker after it served about N requests: a replacement starts first, so no request fails (0 = never)"},
		&cli.IntFlag{Name: "limit-max-requests-jitter", Usage: "add a random 0..J to each worker's --limit-max-requests, so workers do not all recycle at once"},
		&cli.BoolFlag{Name: "reuse-port", Usage: "each worker binds its own SO_REUSEPORT socket instead of sharing the master's; the kernel then picks a worker per connection, even a blocked one"},
	}
	serveFlags = append(serveFlags, appFlags()...)
	serveFlags = append(serveFlags, limitFlags()...)
	serveFlags = append(serveFlags, logFlags()...)

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
				Description:  "Like `uvicorn app.application:app --workers N`. Paths: / (per --mode), /mixed, /all-async, /threadpool, /healthcheck.",
				Flags:        serveFlags,
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
				}, logFlags()...),
				Action: runExternal,
			},
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
		MaxRequests:          c.Int("limit-max-requests"),
	}
	// Zero would silently mean "the default" inside the worker: refuse it.
	switch {
	case cfg.KeepAliveTimeout <= 0:
		return worker.Config{}, badFlag("--timeout-keep-alive must be positive, got %v", cfg.KeepAliveTimeout)
	case cfg.RequestHeaderTimeout <= 0:
		return worker.Config{}, badFlag("--timeout-request-header must be positive, got %v", cfg.RequestHeaderTimeout)
	case cfg.MaxBodyBytes < 1:
		return worker.Config{}, badFlag("--limit-request-body must be at least 1 byte, got %d", cfg.MaxBodyBytes)
	}
	if err := cfg.Validate(); err != nil {
		return worker.Config{}, badFlag("%v", err)
	}
	return cfg, nil
}

func serve(c *cli.Context) error {
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck // stderr cannot be synced on some terminals
	wcfg, err := workerConfig(c, logger)
	if err != nil {
		return err
	}
	workers, port, backlog := c.Int("workers"), c.Int("port"), c.Int("backlog")
	jitter := c.Int("limit-max-requests-jitter")
	switch {
	case jitter < 0:
		return badFlag("--limit-max-requests-jitter must be 0 or more, got %d", jitter)
	case jitter > 0 && wcfg.MaxRequests == 0:
		return badFlag("--limit-max-requests-jitter needs --limit-max-requests")
	case workers < 1:
		return badFlag("--workers must be at least 1, got %d", workers)
	case port < 0 || port > 65535:
		return badFlag("--port must be 0-65535, got %d", port)
	case backlog < 1:
		return badFlag("--backlog must be at least 1, got %d", backlog)
	case c.Duration("timeout-graceful-shutdown") < 0:
		return badFlag("--timeout-graceful-shutdown must not be negative")
	}
	cfg := supervisor.Config{
		Workers:         workers,
		GracefulTimeout: c.Duration("timeout-graceful-shutdown"),
		Logger:          logger,
	}
	var reuseAddr string // --reuse-port: where each worker binds
	if c.Bool("reuse-port") {
		// The master binds without listening: a busy port fails here, and
		// port 0 becomes the concrete port every worker must share.
		reserved, addr, err := supervisor.ReservePort(c.String("host"), port)
		if err != nil {
			return err
		}
		defer reserved.Close()
		cfg.ReusePort = true
		reuseAddr = addr.String()
		cfg.Addr = "http://" + reuseAddr
	} else {
		ln, addr, err := supervisor.Listen(c.String("host"), port, backlog)
		if err != nil {
			return err
		}
		defer ln.Close()
		cfg.Listener = ln
		cfg.Addr = "http://" + addr.String()
	}
	// Only limits the user set travel on the worker's command line.
	var limits []string
	for _, name := range limitFlagNames {
		if c.IsSet(name) {
			limits = append(limits, "--"+name, fmt.Sprint(c.Value(name)))
		}
	}
	cfg.WorkerArgs = func(index, total int) []string {
		argv := []string{
			"demo", "worker", fmt.Sprintf("%d/%d", index, total),
			"--mode", string(wcfg.Mode),
			"--external", wcfg.External,
			"--calls", strconv.Itoa(wcfg.Calls),
			"--external-timeout", wcfg.ExternalTimeout.String(),
			"--threadpool-size", strconv.Itoa(wcfg.ThreadpoolSize),
			"--access-log=" + strconv.FormatBool(wcfg.AccessLog),
			"--log-level", c.String("log-level"),
			"--log-format", c.String("log-format"),
		}
		argv = append(argv, limits...)
		if wcfg.MaxRequests > 0 {
			// Drawn per process, respawns included, and shown by ps.
			n := wcfg.MaxRequests + rand.IntN(jitter+1)
			argv = append(argv, "--limit-max-requests", strconv.Itoa(n))
		}
		if reuseAddr != "" {
			argv = append(argv, "--reuse-port-bind", reuseAddr, "--backlog", strconv.Itoa(backlog))
		}
		return argv
	}
	return supervisor.Run(cfg)
}

func runWorker(c *cli.Context) error {
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck
	cfg, err := workerConfig(c, logger)
	if err != nil {
		return err
	}
	if c.NArg() != 1 {
		return badFlag("demo worker takes one INDEX/TOTAL argument")
	}
	i, n, ok := strings.Cut(c.Args().First(), "/")
	cfg.Index, err = strconv.Atoi(i)
	if err == nil {
		cfg.Total, err = strconv.Atoi(n)
	}
	if !ok || err != nil || cfg.Index < 1 || cfg.Index > cfg.Total {
		return badFlag("bad worker INDEX/TOTAL %q", c.Args().First())
	}
	cfg.ReusePortAddr = c.String("reuse-port-bind")
	cfg.Backlog = c.Int("backlog")
	cfg.Logger = logger.Named(fmt.Sprintf("worker-%d[%d]", cfg.Index, os.Getpid()))
	return worker.Run(cfg)
}

func runExternal(c *cli.Context) error {
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck
	port, delay := c.Int("port"), c.Duration("delay")
	if port < 0 || port > 65535 {
		return badFlag("--port must be 0-65535, got %d", port)
	}
	if delay < 0 {
		return badFlag("--delay must not be negative")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.String("host"), strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("external api: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return external.Serve(ctx, ln, external.Config{Delay: delay, Logger: logger.Named("external")})
}

// newLogger builds the zap logger every role uses: uvicorn-like console
// lines on stderr (`2021-07-07 20:08:57,962 INFO  message`) or JSON.
func newLogger(c *cli.Context) (*zap.Logger, error) {
	levels := map[string]zapcore.Level{"debug": zap.DebugLevel, "info": zap.InfoLevel, "warning": zap.WarnLevel, "error": zap.ErrorLevel}
	level, ok := levels[c.String("log-level")]
	if !ok {
		return nil, badFlag("--log-level %q: want debug, info, warning or error", c.String("log-level"))
	}
	enc := zapcore.EncoderConfig{
		TimeKey:          "time",
		LevelKey:         "level",
		NameKey:          "logger",
		MessageKey:       "msg",
		LineEnding:       "\n",
		EncodeLevel:      zapcore.CapitalLevelEncoder,
		EncodeTime:       zapcore.TimeEncoderOfLayout("2006-01-02 15:04:05,000"),
		EncodeDuration:   zapcore.StringDurationEncoder,
		ConsoleSeparator: " ",
	}
	var encoder zapcore.Encoder
	switch c.String("log-format") {
	case "console":
		encoder = zapcore.NewConsoleEncoder(enc)
	case "json":
		enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		encoder = zapcore.NewJSONEncoder(enc)
	default:
		return nil, badFlag("--log-format %q: want console or json", c.String("log-format"))
	}
	return zap.New(zapcore.NewCore(encoder, zapcore.Lock(os.Stderr), level)), nil
}
