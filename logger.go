package main

import (
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"demo/logs"
)

// workerLogBatch: a worker logs up to four lines per request on its event
// loop; they go out together, at most this much later. Each batch wakes
// the Sink's writer goroutine, and its wake-up and sleep cost a few context
// switches, dear in a virtual machine: at 20 ms, a share of a busy worker's
// CPU that docs/performance.md measures. 50 ms is still below what a
// person reading the lines notices, and a batch of a worker at full speed
// stays well within the Sink's limit.
const workerLogBatch = 50 * time.Millisecond

// newLogger builds the logger of a role from --log-level and --log-format:
// uvicorn-like lines on stderr that never make the caller wait (package
// logs). name names it (worker-1[4711]); batch is logs.Config's.
func newLogger(c *cli.Context, name string, batch time.Duration) (*logs.Logger, error) {
	level, err := logs.ParseLevel(c.String("log-level"))
	if err != nil {
		return nil, settingError(c, err)
	}
	format, err := logs.ParseFormat(c.String("log-format"))
	if err != nil {
		return nil, settingError(c, err)
	}
	return logs.New(logs.Config{Format: format, Level: level, Name: name, Batch: batch})
}

// logFlags are every command's logging flags.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Category: catLogs, Usage: strings.Join(logs.Levels, ", ") + " (trace adds each worker's connections and requests, step by step; demo logs nothing at critical)"},
		&cli.StringFlag{Name: "log-format", Value: "console", Category: catLogs, Usage: "console (uvicorn's lines) or json (one object per line, for tools)"},
	}
}
