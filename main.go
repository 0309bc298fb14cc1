// Command demo reproduces, for real, how Uvicorn serves a Python app: a
// master process holding one listening socket and N worker processes, each
// running one single-goroutine event loop. It shows why blocking code inside
// an event loop hurts, and why more workers only hide it.
//
// Package main is the command line only (urfave/cli/v2): one file per
// command (cmd_*.go), the shared flag plumbing (flags.go: seconds for
// durations, DEMO_<FLAG> variables, one-line errors; args.go: flags before
// or after arguments), Uvicorn's and Gunicorn's spellings (foreign.go) and
// the logger's flags (logger.go). Each role's rules about its settings live
// in its own package; the command line maps their errors to flags.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"demo/contract"
	"demo/worker"
)

// Exit codes, documented in the README.
const (
	exitError = 1 // a runtime failure: port in use, a worker that cannot boot, a forced shutdown
	exitUsage = 2 // bad flags or arguments, an unknown command, or `demo worker` run by hand
)

func main() {
	app := newApp()
	if err := app.Run(normalizeArgs(app, os.Args)); err != nil {
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

// serving is the first thing a serving role does (master, worker,
// external API, baseline): a reader of its stdout or stderr that goes away
// (`demo serve 2>&1 | head`) must not kill it, so writes fail with EPIPE
// instead, which the logs take as "logging is off". The Go runtime raises
// SIGPIPE for writes to fds 1 and 2 unless it is ignored. The reporting
// commands (status, experiment, bench) keep the default: `| head` ends them.
func serving() { signal.Ignore(syscall.SIGPIPE) }

func newApp() *cli.App {
	app := &cli.App{
		Name:    "demo",
		Usage:   "see why blocking code inside an event loop hurts, with real processes",
		Version: version(),
		Description: "demo runs a master holding one listening socket and worker processes that each run one event loop,\n" +
			"as Uvicorn does, and shows what a blocking call inside that loop does to every request. Start with\n" +
			"`demo experiment`. Exit codes: 0 done, 1 a runtime failure, 2 bad flags or arguments, 3 a worker\n" +
			"could not start, 130 interrupted.",
		EnableBashCompletion: true,
		// urfave/cli adds --help only where it adds its own help command;
		// demo has its own (`demo help serve` is `demo serve --help`).
		Flags:  []cli.Flag{cli.HelpFlag},
		Action: unknownCommand,
		// main prints the error and picks the exit code; urfave/cli would
		// otherwise call os.Exit itself for cli.Exit errors.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
		Commands: []*cli.Command{
			experimentCommand(),
			serveCommand(),
			externalCommand(),
			appCommand(),
			statusCommand(),
			benchCommand(),
			versionCommand(),
			helpCommand(),
			completionCommand(),
			manCommand(),
			baselineCommand(),
			workerCommand(),
		},
	}
	durationsTakeSeconds(app.Commands)
	checkArgs(app.Commands)
	everyCommand(app.Commands, func(cmd *cli.Command) {
		cmd.OnUsageError = usageError
		cmd.BashComplete = completeCommand(cmd)
		if len(cmd.Subcommands) > 0 {
			cmd.HideHelpCommand = true // `demo help app check` does that
			if cmd.Action == nil {
				cmd.Action = unknownCommand
			}
		}
	})
	return app
}

// everyCommand calls fn for each command, subcommands included.
func everyCommand(cmds []*cli.Command, fn func(*cli.Command)) {
	for _, cmd := range cmds {
		fn(cmd)
		everyCommand(cmd.Subcommands, fn)
	}
}
