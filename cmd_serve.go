package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"demo/contract"
	"demo/control"
	"demo/eventloop"
	"demo/metrics"
	"demo/sockets"
	"demo/supervisor"
	"demo/worker"
)

// serveFlags are `demo serve`'s own flags: the master's.
func serveFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to bind"},
		&cli.IntFlag{Name: "port", Value: 8000, Usage: "port to bind (0 picks a free one)"},
		&cli.StringFlag{Name: "uds", Usage: "bind a unix socket at `PATH` instead (mode 0660; a stale socket file is replaced)"},
		&cli.IntFlag{Name: "fd", DefaultText: "none", Usage: "accept on the listening socket inherited as file descriptor `N` instead of binding"},
		&cli.IntFlag{Name: "workers", Value: 1, Usage: "worker processes, each with one event loop"},
		&cli.IntFlag{Name: "backlog", Value: 2048, Usage: "listen backlog: connections the kernel queues while no worker accepts"},
		&cli.DurationFlag{Name: "timeout-graceful-shutdown", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM (and for workers replaced by SIGHUP, SIGTTOU or recycling), how long in-flight requests may finish before the worker is killed"},
		&cli.DurationFlag{Name: "timeout-worker-healthcheck", Value: supervisor.DefaultHealthcheckTimeout, Usage: "kill and replace a worker process that has not answered the master's pings for this long (answered beside its event loop: a blocked loop still answers)"},
		&cli.DurationFlag{Name: "timeout", Usage: "kill and replace a worker whose event loop has been blocked for longer than this, like gunicorn's --timeout (0 = never; stalls are logged either way)"},
		&cli.BoolFlag{Name: "access-log", Value: true, Usage: "log one line per request"},
		&cli.BoolFlag{Name: "no-access-log", Usage: "disable the access log"},
		&cli.IntFlag{Name: "limit-max-requests", Usage: "recycle a worker after it served about N requests: a replacement starts first, so no request fails (0 = never)"},
		&cli.IntFlag{Name: "limit-max-requests-jitter", Usage: "add a random 0..J to each worker's --limit-max-requests, so workers do not all recycle at once"},
		&cli.BoolFlag{Name: "reuse-port", Usage: "each worker binds its own SO_REUSEPORT socket instead of sharing the master's; the kernel then picks a worker per connection, even a blocked one"},
		&cli.BoolFlag{Name: "epoll-exclusive", Usage: "workers wait on the shared socket with EPOLLEXCLUSIVE: a new connection wakes one idle worker instead of all of them, and each wake-up accepts one connection (default: every worker wakes, and the first takes up to 100 queued connections, as asyncio does)"},
		&cli.StringFlag{Name: "control", Usage: "`PATH` of the control socket `demo status` reads (default: derived from --port or --uds)"},
		&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics from the master: each worker's requests, connections, loop stalls and restarts, and the master's own process (port 0 picks a free one)"},
	}
	flags = append(flags, appFlags()...)
	flags = append(flags, limitFlags()...)
	return append(flags, logFlags()...)
}

// listening is the socket serve ends up with, and what to call it.
type listening struct {
	ln        *os.File // nil with --reuse-port
	addr      string   // for the "running on" line
	port      int      // TCP port, for the control socket's default path
	uds       string
	reuseAddr string // --reuse-port: where each worker binds
}

// listen picks the socket, in this order: --uds, --fd, systemd socket
// activation (LISTEN_FDS for us), --reuse-port, else a TCP socket on
// --host:--port bound here.
func listen(c *cli.Context, logger *zap.Logger) (*listening, error) {
	port, backlog := c.Int("port"), c.Int("backlog")
	chosen := 0
	for _, name := range []string{"uds", "fd", "reuse-port"} {
		if c.IsSet(name) {
			chosen++
		}
	}
	if chosen > 1 {
		return nil, badFlag("--uds, --fd and --reuse-port exclude each other")
	}
	if c.Bool("epoll-exclusive") && c.Bool("reuse-port") {
		return nil, badFlag("--epoll-exclusive is for the shared socket; with --reuse-port every worker has its own")
	}
	switch {
	case c.IsSet("uds"):
		path := c.String("uds")
		ln, err := sockets.ListenUnix(path, backlog)
		if err != nil {
			return nil, err
		}
		return &listening{ln: ln, addr: "unix:" + path, uds: path}, nil
	case c.IsSet("fd"):
		ln, err := sockets.ListenFD(c.Int("fd"))
		if err != nil {
			return nil, err
		}
		return describe(ln), nil
	case os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()):
		ln, name, err := sockets.ListenSystemd()
		if err != nil {
			return nil, err
		}
		logger.Info(fmt.Sprintf("Using the socket systemd passed (%s)", name))
		return describe(ln), nil
	case c.Bool("reuse-port"):
		// The master binds without listening: a busy port fails here, and
		// port 0 becomes the concrete port every worker must share.
		reserved, addr, err := sockets.ReservePort(c.String("host"), port)
		if err != nil {
			return nil, err
		}
		// Held, not listened on, until serve returns: see ReservePort.
		return &listening{ln: reserved, addr: "http://" + addr.String(), port: addr.Port, reuseAddr: addr.String()}, nil
	}
	ln, addr, err := sockets.ListenTCP(c.String("host"), port, backlog)
	if err != nil {
		return nil, err
	}
	return &listening{ln: ln, addr: "http://" + addr.String(), port: addr.Port}, nil
}

// describe names an inherited socket by its local address.
func describe(ln *os.File) *listening {
	l := &listening{ln: ln, addr: "an inherited socket"}
	fl, err := net.FileListener(ln) // a dup: closing it leaves ln alone
	if err != nil {
		return l
	}
	defer fl.Close()
	switch a := fl.Addr().(type) {
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
	wcfg, err := workerConfig(c, logger.Logger)
	if err != nil {
		return err
	}
	// The app: a bad file stops here, on one line, before any worker
	// starts. Workers read it again when they start, so a SIGHUP restart
	// serves what the file says then.
	spec, err := worker.LoadApp(wcfg)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	serving := string(wcfg.Mode)
	if wcfg.AppFile != "" {
		serving = wcfg.AppFile
		if wcfg.AppFile, err = filepath.Abs(wcfg.AppFile); err != nil {
			return fmt.Errorf("--app: %w", err)
		}
		logger.Info(spec.Summary())
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
	case c.Duration("timeout-worker-healthcheck") <= 0:
		return badFlag("--timeout-worker-healthcheck must be positive")
	case c.Duration("timeout") < 0:
		return badFlag("--timeout must not be negative")
	}
	maxWorkers := 0
	if !c.Bool("reuse-port") && !c.Bool("epoll-exclusive") {
		// One more than the workers is needed while a worker is replaced.
		maxWorkers = eventloop.MaxSharedListeners - 1
		if workers > maxWorkers {
			return badFlag("--workers %d: at most %d workers can share one socket this way: Linux allows %d event loops to wait on a socket through nested epoll sets, and replacing a worker needs one more; use --epoll-exclusive or --reuse-port for more",
				workers, maxWorkers, eventloop.MaxSharedListeners)
		}
	}
	var metricsSrv *metrics.Server
	if addr := c.String("metrics"); addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return badFlag("--metrics %q: want HOST:PORT, e.g. 127.0.0.1:9464", addr)
		}
		if metricsSrv, err = metrics.Listen(addr); err != nil {
			return err
		}
		defer metricsSrv.Close()
	}
	sock, err := listen(c, logger.Logger)
	if err != nil {
		return err
	}
	defer sock.ln.Close()

	ctlPath := c.String("control")
	if ctlPath == "" {
		ctlPath = control.Path(sock.port, sock.uds)
	}
	ctl := supervisor.NewControl()
	ctlServer, err := control.Listen(ctlPath)
	if err != nil {
		return err
	}
	defer ctlServer.Close()
	ctlServer.Serve(func() control.Snapshot {
		snap := snapshot(ctl, sock.addr, serving)
		snap.LogLinesDropped = logger.Dropped()
		return snap
	})
	logger.Info("Control socket at " + ctlPath + " (demo status reads it)")
	if metricsSrv != nil {
		metricsSrv.Serve(metrics.Handler(ctl))
		logger.Info("Metrics at http://" + metricsSrv.Addr() + "/metrics")
	}

	cfg := supervisor.Config{
		Addr:               sock.addr,
		Workers:            workers,
		MaxWorkers:         maxWorkers,
		GracefulTimeout:    c.Duration("timeout-graceful-shutdown"),
		HealthcheckTimeout: c.Duration("timeout-worker-healthcheck"),
		Timeout:            c.Duration("timeout"),
		UnixSocket:         sock.uds,
		Control:            ctl,
		Logger:             logger.Logger,
	}
	if sock.reuseAddr != "" {
		cfg.ReusePort = true
	} else {
		cfg.Listener = sock.ln
	}
	// Only limits the user set travel on the worker's command line.
	var limits []string
	for _, name := range limitFlagNames {
		if c.IsSet(name) {
			limits = append(limits, "--"+name, fmt.Sprint(c.Value(name)))
		}
	}
	cfg.WorkerArgs = func(index, total int) []string {
		argv := []string{"demo", "worker", fmt.Sprintf("%d/%d", index, total)}
		if wcfg.AppFile != "" {
			argv = append(argv, "--app", wcfg.AppFile)
			if wcfg.External != "" {
				argv = append(argv, "--external", wcfg.External)
			}
		} else {
			argv = append(argv, "--mode", string(wcfg.Mode), "--external", wcfg.External, "--calls", strconv.Itoa(wcfg.Calls))
		}
		argv = append(argv,
			"--external-timeout", wcfg.ExternalTimeout.String(),
			"--threadpool-size", strconv.Itoa(wcfg.ThreadpoolSize),
			"--access-log="+strconv.FormatBool(wcfg.AccessLog),
			"--log-level", c.String("log-level"),
			"--log-format", c.String("log-format"),
		)
		argv = append(argv, limits...)
		if c.Bool("epoll-exclusive") {
			argv = append(argv, "--epoll-exclusive")
		}
		if wcfg.MaxRequests > 0 {
			// Drawn per process, respawns included, and shown by ps.
			n := wcfg.MaxRequests + rand.IntN(jitter+1)
			argv = append(argv, "--limit-max-requests", strconv.Itoa(n))
		}
		if sock.reuseAddr != "" {
			argv = append(argv, "--reuse-port-bind", sock.reuseAddr, "--backlog", strconv.Itoa(backlog))
		}
		return argv
	}
	return supervisor.Run(cfg)
}

// snapshot answers a control connection from the supervisor's table, the
// loops' own reports and /proc.
func snapshot(ctl *supervisor.Control, addr, mode string) control.Snapshot {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := time.Now()
	snap := control.Snapshot{MasterPID: os.Getpid(), Addr: addr, Mode: mode, Taken: now, Refresh: contract.HeartbeatInterval}
	ws, err := ctl.Workers(ctx)
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
