package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"demo/contract"
	"demo/control"
	"demo/eventloop"
	"demo/metrics"
	"demo/setting"
	"demo/sockets"
	"demo/supervisor"
	"demo/worker"
)

// Flag categories of `demo serve --help`.
const (
	catSocket  = "Where to listen"
	catWorkers = "Workers"
	catApp     = "The app"
	catLimits  = "Limits"
	catProxy   = "Behind a proxy"
	catLogs    = "Logs and inspection"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the app: a master holding the socket and --workers event-loop workers",
		ArgsUsage: "[APP]",
		Description: "Like `uvicorn app.application:app --workers N` (or gunicorn's `-w N -b HOST:PORT`). demo cannot\n" +
			"import Python, so APP is only noted in the log: the app is built in (--mode picks what GET / does)\n" +
			"or described in --app FILE. The built-in app's paths: / (per --mode), /mixed, /all-async,\n" +
			"/threadpool, /healthcheck. Flags go before or after APP. Every flag can also come from the\n" +
			"environment variable shown beside it ($DEMO_WORKERS for --workers); the command line wins over it.\n" +
			"Durations take seconds (30, 1.5) or a unit (30s, 500ms).",
		Flags:  serveFlags(),
		Action: serve,
	}
}

// serveFlags are `demo serve`'s flags: the master's own, and the workers'
// it passes on.
func serveFlags() []cli.Flag {
	def := worker.DefaultConfig()
	master := []cli.Flag{
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Category: catSocket, Usage: "address to bind (\"\" or 0.0.0.0: every IPv4 address)"},
		&cli.IntFlag{Name: "port", Value: 8000, Category: catSocket, Usage: "port to bind (0 picks a free one)"},
		&cli.GenericFlag{Name: "bind", Aliases: []string{"b"}, Value: &bindValue{}, Category: catSocket, Usage: "gunicorn's spelling of where to listen: `ADDRESS` is HOST:PORT, HOST (port 8000), unix:PATH or fd://N (one socket: every worker shares it)"},
		&cli.StringFlag{Name: "uds", Category: catSocket, Usage: "bind a unix socket at `PATH` instead (mode 0660; a stale socket file is replaced)"},
		&cli.IntFlag{Name: "fd", DefaultText: "none", Category: catSocket, Usage: "accept on the listening socket inherited as file descriptor `N` instead of binding"},
		&cli.IntFlag{Name: "backlog", Value: def.Backlog, Category: catSocket, Usage: "listen backlog: connections the kernel queues while no worker accepts"},
		&cli.BoolFlag{Name: "reuse-port", Category: catSocket, Usage: "each worker binds its own SO_REUSEPORT socket instead of sharing the master's; the kernel then picks a worker per connection, even a blocked one (not gunicorn's --reuse-port, which sets the option on the one shared socket)"},
		&cli.IntFlag{Name: "workers", Aliases: []string{"w"}, Value: 1, Category: catWorkers, Usage: "worker processes, each with one event loop"},
		&cli.DurationFlag{Name: "timeout-graceful-shutdown", Aliases: []string{"graceful-timeout"}, Value: supervisor.DefaultGracefulTimeout, Category: catWorkers, Usage: "on SIGINT/SIGTERM (and for workers replaced by SIGHUP, SIGTTOU or recycling), how long in-flight requests may finish before the worker is killed (0: at once)"},
		&cli.DurationFlag{Name: "timeout-worker-healthcheck", Value: supervisor.DefaultHealthcheckTimeout, Category: catWorkers, Usage: "kill and replace a worker process that has not answered the master's pings for this long (answered beside its event loop: a blocked loop still answers)"},
		&cli.DurationFlag{Name: "timeout", Aliases: []string{"t"}, Category: catWorkers, Usage: "kill and replace a worker whose event loop has been blocked for longer than this, like gunicorn's --timeout (0 = never; stalls are logged either way)"},
		&cli.IntFlag{Name: "limit-max-requests-jitter", Aliases: []string{"max-requests-jitter"}, Category: catWorkers, Usage: "add a random 0..J to each worker's --limit-max-requests, so workers do not all recycle at once"},
		&cli.BoolFlag{Name: "no-access-log", Category: catLogs, Usage: "disable the access log (same as --access-log=false)"},
		&cli.BoolFlag{Name: "no-proxy-headers", Category: catProxy, Usage: "ignore X-Forwarded-For and X-Forwarded-Proto (same as --proxy-headers=false)"},
		&cli.StringFlag{Name: "control", Category: catLogs, Usage: "`PATH` of the control socket `demo status` reads (default: derived from --port or --uds)"},
		&cli.StringFlag{Name: "metrics", Category: catLogs, Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics from the master: each worker's requests, connections, loop stalls and restarts, and the master's own process (port 0 picks a free one)"},
	}
	flags := append(master, workerSharedFlags()...)
	flags = append(flags, logFlags()...)
	flags = fromEnvironment(flags, map[string][]string{
		"workers":             {"WEB_CONCURRENCY"},     // Uvicorn's and Gunicorn's
		"forwarded-allow-ips": {"FORWARDED_ALLOW_IPS"}, // Uvicorn's and Gunicorn's
	})
	return append(flags, notedFlags()...)
}

// listening is the socket serve ends up with, and what to call it.
type listening struct {
	ln        *os.File // nil with --reuse-port
	addr      string   // for the "running on" line
	port      int      // TCP port, for the control socket's default path
	uds       string
	reuseAddr string // --reuse-port: where each worker binds
}

// where is where to listen, from --host/--port, --uds or --fd, or from
// gunicorn's --bind, which says the same in one flag.
type where struct {
	host string
	port int
	uds  string
	fd   int // -1: none
}

func whereToListen(c *cli.Context) (where, error) {
	w := where{host: c.String("host"), port: c.Int("port"), uds: c.String("uds"), fd: -1}
	if c.IsSet("fd") {
		w.fd = c.Int("fd")
	}
	binds := *c.Generic("bind").(*bindValue)
	if len(binds) == 0 {
		return w, nil
	}
	if len(binds) > 1 {
		return w, badFlag("%s given %d times: demo listens on one socket, which every worker shares", source(c, "bind"), len(binds))
	}
	for _, other := range []string{"host", "port", "uds", "fd"} {
		if c.IsSet(other) {
			return w, badFlag("%s and %s both say where to listen: give one", source(c, "bind"), source(c, other))
		}
	}
	return parseBind(binds[0])
}

// parseBind reads gunicorn's --bind: HOST:PORT, HOST, unix:PATH, fd://N.
func parseBind(b string) (where, error) {
	w := where{host: "127.0.0.1", port: 8000, fd: -1}
	switch {
	case strings.HasPrefix(b, "unix:"):
		w.uds = strings.TrimPrefix(b, "unix:")
		if w.uds == "" {
			return w, badFlag("--bind %q: want unix:PATH", b)
		}
		return w, nil
	case strings.HasPrefix(b, "fd://"):
		n, err := strconv.Atoi(strings.TrimPrefix(b, "fd://"))
		if err != nil || n < 0 {
			return w, badFlag("--bind %q: want fd://N, a file descriptor number", b)
		}
		w.fd = n
		return w, nil
	}
	host, port, err := net.SplitHostPort(b)
	if err != nil { // no port: gunicorn binds the host on 8000
		host, port = strings.Trim(b, "[]"), "8000"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || !sockets.ValidHost(host) {
		return w, badFlag("--bind %q: want HOST:PORT, HOST, unix:PATH or fd://N", b)
	}
	w.host, w.port = host, n
	return w, nil
}

// bindValue collects --bind, which gunicorn lets repeat, so that a second
// one is refused rather than silently replacing the first.
type bindValue []string

func (b *bindValue) Set(s string) error {
	// urfave/cli copies a flag's value to its aliases by setting each to
	// String(): that is not another --bind.
	if len(*b) > 0 && s == b.String() {
		return nil
	}
	*b = append(*b, s)
	return nil
}
func (b *bindValue) String() string { return strings.Join(*b, ",") }

// listen picks the socket, in this order: --uds, --fd, systemd socket
// activation (LISTEN_FDS for us), --reuse-port, else a TCP socket on
// --host:--port bound here. The flags a socket it did not bind makes
// pointless are logged as ignored.
func listen(c *cli.Context, w where, logger *zap.Logger) (*listening, error) {
	backlog := c.Int("backlog")
	chosen := 0
	for _, on := range []bool{w.uds != "", w.fd >= 0, c.Bool("reuse-port")} {
		if on {
			chosen++
		}
	}
	if chosen > 1 {
		return nil, badFlag("--uds, --fd and --reuse-port exclude each other")
	}
	if c.Bool("epoll-exclusive") && c.Bool("reuse-port") {
		return nil, badFlag("--epoll-exclusive is for the shared socket; with --reuse-port every worker has its own")
	}
	systemd := os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid())
	ignored := func(why string, names ...string) {
		for _, name := range names {
			if c.IsSet(name) {
				logger.Warn(fmt.Sprintf("Ignoring %s: %s", source(c, name), why))
			}
		}
	}
	switch {
	case w.uds != "":
		ignored("the socket is the unix socket of --uds", "host", "port")
		if systemd {
			logger.Warn("Ignoring the socket systemd passed (LISTEN_FDS): --uds binds its own")
		}
		ln, err := sockets.ListenUnix(w.uds, backlog)
		if err != nil {
			return nil, settingError(c, err)
		}
		return &listening{ln: ln, addr: "unix:" + w.uds, uds: w.uds}, nil
	case w.fd >= 0:
		ignored("the socket is the one inherited by --fd, already bound and listening", "host", "port", "backlog")
		ln, err := sockets.ListenFD(w.fd)
		if err != nil {
			return nil, settingError(c, err)
		}
		return describe(ln), nil
	case systemd:
		ignored("the socket is the one systemd passed (socket activation), already bound and listening", "host", "port", "bind", "backlog", "reuse-port")
		ln, name, err := sockets.ListenSystemd()
		if err != nil {
			return nil, err
		}
		if name != "" {
			name = fmt.Sprintf(" (%s)", name)
		}
		logger.Info("Using the socket systemd passed" + name)
		return describe(ln), nil
	case c.Bool("reuse-port"):
		// The master binds without listening: a busy port fails here, and
		// port 0 becomes the concrete port every worker must share.
		reserved, addr, err := sockets.ReservePort(w.host, w.port)
		if err != nil {
			return nil, settingError(c, err)
		}
		// Held, not listened on, until serve returns: see ReservePort.
		return &listening{ln: reserved, addr: "http://" + addr.String(), port: addr.Port, reuseAddr: addr.String()}, nil
	}
	ln, addr, err := sockets.ListenTCP(w.host, w.port, backlog)
	if err != nil {
		return nil, settingError(c, err)
	}
	return &listening{ln: ln, addr: "http://" + addr.String(), port: addr.Port}, nil
}

// describe names an inherited socket by its local address.
func describe(ln *os.File) *listening {
	l := &listening{ln: ln, addr: "an inherited socket"}
	addr, err := sockets.Addr(ln)
	if err != nil {
		return l
	}
	switch a := addr.(type) {
	case *net.TCPAddr:
		l.addr, l.port = "http://"+a.String(), a.Port
	case *net.UnixAddr:
		l.addr, l.uds = "unix:"+a.Name, a.Name
	}
	return l
}

func serve(c *cli.Context) error {
	serving()
	logger, err := newLogger(c, "", 0)
	if err != nil {
		return err
	}
	defer logger.Close()
	wcfg, err := workerConfig(c, serveSetsItself)
	if err != nil {
		return err
	}
	if err := wcfg.Validate(); err != nil {
		return settingError(c, err)
	}
	// The app: a bad file stops here, on one line, before any worker
	// starts. Workers read it again when they start, so a SIGHUP restart
	// serves what the file says then.
	spec, err := worker.LoadApp(wcfg)
	if _, ok := setting.As(err); ok { // --mode, --calls
		return settingError(c, err)
	} else if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	serving := string(wcfg.Mode)
	if wcfg.AppFile != "" {
		serving = wcfg.AppFile
		if wcfg.AppFile, err = filepath.Abs(wcfg.AppFile); err != nil {
			return fmt.Errorf("--app: %w", err)
		}
	}
	jitter := c.Int("limit-max-requests-jitter")
	switch { // the jitter is drawn here, for each worker: its rules are ours
	case jitter < 0:
		return badFlag("%s must be 0 or more, got %d", source(c, "limit-max-requests-jitter"), jitter)
	case jitter > 0 && wcfg.MaxRequests == 0:
		return badFlag("%s needs --limit-max-requests", source(c, "limit-max-requests-jitter"))
	}
	cfg := supervisor.Config{
		Workers:            c.Int("workers"),
		GracefulTimeout:    c.Duration("timeout-graceful-shutdown"),
		HealthcheckTimeout: c.Duration("timeout-worker-healthcheck"),
		Timeout:            c.Duration("timeout"),
		Logger:             logger.Logger,
	}
	if !c.Bool("reuse-port") && !c.Bool("epoll-exclusive") {
		// One more than the workers is needed while a worker is replaced.
		cfg.MaxWorkers = eventloop.MaxSharedListeners - 1
	}
	if err := cfg.Validate(); err != nil {
		if cfg.MaxWorkers > 0 && cfg.Workers > cfg.MaxWorkers {
			return badFlag("%v: Linux lets %d event loops wait on one socket through nested epoll sets, and replacing a worker needs one more; --epoll-exclusive or --reuse-port allow more",
				settingError(c, err), eventloop.MaxSharedListeners)
		}
		return settingError(c, err)
	}
	w, err := whereToListen(c)
	if err != nil {
		return err
	}
	noteForeign(c, logger.Logger, wcfg)
	if wcfg.AppFile != "" {
		logger.Info(spec.Summary())
	}
	var metricsSrv *metrics.Server
	if addr := c.String("metrics"); addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return badFlag("%s %q: want HOST:PORT, e.g. 127.0.0.1:9464", source(c, "metrics"), addr)
		}
		if metricsSrv, err = metrics.Listen(addr); err != nil {
			return err
		}
		defer metricsSrv.Close()
	}
	sock, err := listen(c, w, logger.Logger)
	if err != nil {
		return err
	}
	defer sock.ln.Close()

	ctlPath := c.String("control")
	if ctlPath == "" {
		ctlPath = control.Path(sock.port, sock.uds)
	}
	insp := supervisor.NewInspector()
	ctlServer, err := control.Listen(ctlPath)
	if err != nil {
		return err
	}
	defer ctlServer.Close()
	ctlServer.Serve(func() control.Snapshot {
		snap := snapshot(insp, sock.addr, serving)
		snap.LogLinesDropped = logger.Dropped()
		return snap
	})
	logger.Info("Control socket at " + ctlPath + " (demo status reads it)")
	if metricsSrv != nil {
		metricsSrv.Serve(metrics.Handler(insp))
		logger.Info("Metrics at http://" + metricsSrv.Addr() + "/metrics")
	}

	cfg.Addr, cfg.UnixSocket, cfg.Inspector = sock.addr, sock.uds, insp
	if sock.reuseAddr != "" {
		cfg.ReusePort = true
		wcfg.ReusePortAddr, wcfg.Backlog = sock.reuseAddr, c.Int("backlog")
	} else {
		cfg.Listener = sock.ln
	}
	logs := logSettings{level: c.String("log-level"), format: c.String("log-format")}
	cfg.WorkerArgs = func(index, total int) []string {
		one := wcfg
		one.Index, one.Total = index, total
		if one.MaxRequests > 0 {
			// Drawn per process, respawns included, and shown by ps.
			one.MaxRequests += rand.IntN(jitter + 1)
		}
		return workerCommandLine(one, logs)
	}
	return supervisor.Run(cfg)
}

// snapshot answers a control connection from the supervisor's table, the
// loops' own reports and /proc.
func snapshot(insp *supervisor.Inspector, addr, mode string) control.Snapshot {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := time.Now()
	snap := control.Snapshot{MasterPID: os.Getpid(), Addr: addr, Mode: mode, Taken: now, Refresh: contract.HeartbeatInterval}
	ws, err := insp.Workers(ctx)
	if err != nil {
		return snap
	}
	for _, w := range ws {
		row := control.Worker{
			Index: w.Index, PID: w.PID, State: w.State.String(), Uptime: now.Sub(w.Started),
			Requests: w.Loop.Requests, InFlight: w.Loop.InFlight, Conns: w.Loop.Conns,
			LongestStall: w.Loop.LongestStall, Culprit: w.Loop.Culprit, RSS: rss(w.PID),
			LogLinesDropped: w.Loop.LogLinesDropped,
		}
		if w.Stalled {
			if w.State == supervisor.Ready {
				row.State = "blocked"
			}
			row.StalledFor = w.Stall
			row.LongestStall = max(row.LongestStall, w.Stall)
			if w.StalledBy != "" {
				row.Culprit = w.StalledBy
			}
		}
		snap.Workers = append(snap.Workers, row)
	}
	return snap
}

// rss reads a process's resident set size from /proc (0 if it is gone).
func rss(pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(raw), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}
