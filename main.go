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
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"

	"demo/contract"
	"demo/eventloop"
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
				Description:  "Like `uvicorn app.application:app --workers N`. Paths: / (per --mode), /mixed, /all-async, /threadpool, /healthcheck.",
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
				}, logFlags()...),
				Action: runExternal,
			},
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
	cfg.EpollExclusive = c.Bool("epoll-exclusive")
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
	if c.Int("listeners") < 1 || c.Int("backlog") < 1 {
		return badFlag("--listeners and --backlog must be at least 1")
	}
	lns, err := external.Listen(c.String("host"), port, c.Int("listeners"), c.Int("backlog"))
	if err != nil {
		return fmt.Errorf("external api: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return external.Serve(ctx, lns, external.Config{Delay: delay, Logger: logger.Named("external")})
}

// newLogger builds the zap logger every role uses: uvicorn-like console
// lines on stderr (`2021-07-07 20:08:57,962 INFO  message`) or JSON.
func newLogger(c *cli.Context) (*zap.Logger, error) {
	levels := map[string]zapcore.Level{"debug": zap.DebugLevel, "info": zap.InfoLevel, "warning": zap.WarnLevel, "error": zap.ErrorLevel}
	level, ok := levels[c.String("log-level")]
	if !ok {
		return nil, badFlag("--log-level %q: want debug, info, warning or error", c.String("log-level"))
	}
	var out zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	if c.Command != nil && c.Command.Name == "worker" {
		// A worker logs up to four lines per request on its event loop:
		// they go out together, at most 20 ms later, written beside the
		// loop so that a slow reader of stderr never stalls it. The worker
		// syncs before it blocks on purpose and before it exits.
		out = eventloop.NewBatchWriter(os.Stderr, 20*time.Millisecond)
	}
	core, err := newCore(c.String("log-format"), level, out)
	if err != nil {
		return nil, err
	}
	return zap.New(core), nil
}

// consoleTimeLayout is uvicorn's timestamp, milliseconds after a comma.
const consoleTimeLayout = "2006-01-02 15:04:05,000"

// newCore returns the core of newLogger's logger, writing to out in format
// (console or json) what is at least level.
func newCore(format string, level zapcore.Level, out zapcore.WriteSyncer) (zapcore.Core, error) {
	enc := encoderConfig()
	switch format {
	case "console":
		encoder := newConsoleEncoder(enc)
		core := zapcore.NewCore(encoder, out, level)
		if _, fast := encoder.(*consoleEncoder); fast {
			// The fast encoder's format is zap's (newConsoleEncoder
			// checked): plain INFO lines may skip zap altogether.
			return &consoleCore{Core: core, out: out, prefixAt: math.MinInt64}, nil
		}
		return core, nil
	case "json":
		enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		return zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, level), nil
	}
	return nil, badFlag("--log-format %q: want console or json", format)
}

// encoderConfig is the console format; json changes the time's.
func encoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:          "time",
		LevelKey:         "level",
		NameKey:          "logger",
		MessageKey:       "msg",
		LineEnding:       "\n",
		EncodeLevel:      zapcore.CapitalLevelEncoder,
		EncodeTime:       zapcore.TimeEncoderOfLayout(consoleTimeLayout),
		EncodeDuration:   zapcore.StringDurationEncoder,
		ConsoleSeparator: " ",
	}
}

// consoleCore is the console logger's core with a direct path for the plain
// INFO lines a worker logs per request (worker.InfoLineWriter): through
// zap, a line costs a string, a clock read, an entry from a pool, a level
// check and the encoder's call, 0.45 µs that the event loop pays once or
// more per request. WriteInfo appends the same bytes straight to out in
// 0.15 µs, without allocating, the timestamp formatted once per
// millisecond. Everything else goes through zap, to the same out, so lines
// keep their order.
type consoleCore struct {
	zapcore.Core // zap's, with the fast consoleEncoder
	out          zapcore.WriteSyncer

	mu        sync.Mutex // WriteInfo may be called from any goroutine
	prefixAt  int64      // the Unix millisecond line's prefix is for
	prefixLen int        // line[:prefixLen] is `2021-07-07 20:08:57,962 INFO `
	line      []byte
}

var _ worker.InfoLineWriter = (*consoleCore)(nil)

// WriteInfo writes what logger.Named(name).Info(string(msg)) would, if
// logger has this core and no options: msg is a plain message, no fields.
func (c *consoleCore) WriteInfo(name string, msg []byte) {
	// zap reads time.Now too: the loop's cached Loop.Now is as old as the
	// loop's last wake-up, seconds old after a blocking call.
	c.writeInfoAt(time.Now(), name, msg)
}

// writeInfoAt is WriteInfo at t. Every t must be in one location (time.Now
// gives time.Local): the prefix is cached by t's millisecond alone.
func (c *consoleCore) writeInfoAt(t time.Time, name string, msg []byte) {
	if !c.Enabled(zapcore.InfoLevel) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms := t.UnixMilli(); ms != c.prefixAt {
		c.line = append(t.AppendFormat(c.line[:0], consoleTimeLayout), " INFO "...)
		c.prefixAt, c.prefixLen = ms, len(c.line)
	}
	b := c.line[:c.prefixLen]
	if name != "" {
		b = append(append(b, name...), ' ')
	}
	b = append(append(b, msg...), '\n')
	c.line = b
	_, _ = c.out.Write(b) // as zap does, minus reporting to its ErrorOutput
}

// consoleEncoder is zap's console encoder with a fast path for what a worker
// logs once or more per request: a plain message, no fields, no context. zap
// formats each element of a line through fmt and boxes it; appending the
// same bytes directly costs 0.45 µs a line instead of 1.2 µs, a tenth of
// what the whole request costs the loop. Anything else goes to zap's.
type consoleEncoder struct {
	zapcore.Encoder // zap's console encoder
	buffers         buffer.Pool
}

// newConsoleEncoder returns the fast encoder if, for this configuration,
// it writes exactly zap's bytes (checked here, on sample entries), and
// zap's console encoder otherwise.
func newConsoleEncoder(cfg zapcore.EncoderConfig) zapcore.Encoder {
	zapEnc := zapcore.NewConsoleEncoder(cfg)
	fast := &consoleEncoder{Encoder: zapEnc, buffers: buffer.NewPool()}
	at := time.Date(2021, 7, 7, 20, 8, 57, 962_345_678, time.Local)
	for _, level := range []zapcore.Level{zap.DebugLevel, zap.InfoLevel, zap.WarnLevel, zap.ErrorLevel} {
		for _, name := range []string{"", "worker-1[123]"} {
			ent := zapcore.Entry{Level: level, Time: at, LoggerName: name, Message: `1 - "GET / HTTP/1.1" 200`}
			want, err1 := zapEnc.EncodeEntry(ent, nil)
			got, err2 := fast.EncodeEntry(ent, nil)
			if err1 != nil || err2 != nil || want.String() != got.String() {
				return zapEnc
			}
		}
	}
	return fast
}

// Clone is what zap calls before adding context (Logger.With): the clone is
// zap's encoder alone, since the fast path writes no context.
func (e *consoleEncoder) Clone() zapcore.Encoder { return e.Encoder.Clone() }

// EncodeEntry writes `2021-07-07 20:08:57,962 INFO worker-1[123] message`.
func (e *consoleEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	if len(fields) > 0 || ent.Caller.Defined || ent.Stack != "" {
		return e.Encoder.EncodeEntry(ent, fields)
	}
	b := e.buffers.Get()
	y, mo, d := ent.Time.Date()
	h, mi, sec := ent.Time.Clock()
	ms := ent.Time.Nanosecond() / 1e6
	for _, f := range [...]struct {
		n, width int
		sep      byte
	}{{y, 4, '-'}, {int(mo), 2, '-'}, {d, 2, ' '}, {h, 2, ':'}, {mi, 2, ':'}, {sec, 2, ','}, {ms, 3, ' '}} {
		for div := [...]int{1, 10, 100, 1000}[f.width-1]; div > 0; div /= 10 {
			b.AppendByte(byte('0' + f.n/div%10))
		}
		b.AppendByte(f.sep)
	}
	b.AppendString(ent.Level.CapitalString())
	if ent.LoggerName != "" {
		b.AppendByte(' ')
		b.AppendString(ent.LoggerName)
	}
	b.AppendByte(' ')
	b.AppendString(ent.Message)
	b.AppendByte('\n')
	return b, nil
}
