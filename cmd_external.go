package main

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"demo/external"
	"demo/setting"
)

func externalCommand() *cli.Command {
	return &cli.Command{
		Name:      "external",
		Usage:     "run the slow external API: GET / answers after --delay",
		ArgsUsage: "[APP]",
		Description: "Like the article's `uvicorn external_api:app --port 8888`: APP is accepted and noted, the API is built in.\n" +
			"Durations take seconds (20, 0.5) or a unit (20s, 500ms).",
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
	}
}

func runExternal(c *cli.Context) error {
	serving()
	logger, err := newLogger(c, "external", 0)
	if err != nil {
		return err
	}
	defer logger.Close()
	if app := c.Args().First(); app != "" {
		logger.Info(fmt.Sprintf("APP %q noted, not imported: the external API is built in", app))
	}
	cfg := external.Config{Delay: c.Duration("delay"), Logger: logger.Logger, Fault: external.Fault(c.String("fault")), FaultRate: c.Float64("fault-rate")}
	if c.IsSet("fault-rate") && cfg.Fault == "" {
		return badFlag("%s needs --fault", source(c, "fault-rate"))
	}
	if err := cfg.Validate(); err != nil {
		return settingError(c, err)
	}
	lns, err := external.Listen(c.String("host"), c.Int("port"), c.Int("listeners"), c.Int("backlog"))
	if _, ok := setting.As(err); ok {
		return settingError(c, err)
	} else if err != nil {
		return fmt.Errorf("external api: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return external.Serve(ctx, lns, cfg)
}
