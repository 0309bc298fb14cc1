package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"demo/control"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show a running master's workers: state, requests, connections, event-loop stalls and their culprits, RSS",
		Description: "Reads the control socket of the `demo serve` on --port (or --uds, or --control PATH).\n" +
			"STATE blocked: its event loop has not moved for over a second, for STALLED NOW; CULPRIT names the request and the call blocking it.\n" +
			"REQUESTS, IN FLIGHT and CONNS come from beside the loop, so they stay current while it is blocked.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "port", Value: 8000, Usage: "the --port of the demo serve to inspect"},
			&cli.StringFlag{Name: "uds", Usage: "the --uds `PATH` of the demo serve to inspect"},
			&cli.StringFlag{Name: "control", Usage: "the control socket `PATH` (overrides --port and --uds)"},
			&cli.BoolFlag{Name: "json", Usage: "print the snapshot as JSON, for scripts"},
			&cli.BoolFlag{Name: "watch", Usage: "refresh every second until Ctrl+C"},
		},
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	path := c.String("control")
	if path == "" {
		path = control.Path(c.Int("port"), c.String("uds"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tty := isTerminal(os.Stdout)
	for {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		snap, err := control.Fetch(fctx, path)
		cancel()
		if err != nil {
			return err
		}
		if c.Bool("watch") && tty {
			fmt.Print("\033[H\033[2J") // home and clear: redraw in place
		}
		if c.Bool("json") {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			err = enc.Encode(snap)
		} else {
			err = control.Render(os.Stdout, snap)
		}
		if err != nil || !c.Bool("watch") {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// isTerminal reports whether f is a terminal, where --watch may redraw in
// place.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
