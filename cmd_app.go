package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"demo/appspec"
	"demo/worker"
)

// appCommand is `demo app`: the app file's tools.
func appCommand() *cli.Command {
	builtinFlags := []cli.Flag{
		&cli.StringFlag{Name: "mode", Value: string(worker.Mixed), Usage: "the built-in app's GET /: mixed, async or threadpool, as demo serve --mode takes it"},
		&cli.IntFlag{Name: "calls", Value: 2, Usage: "external calls per request in the built-in app, as demo serve --calls takes it"},
	}
	return &cli.Command{
		Name:  "app",
		Usage: "describe your own endpoints in a file: print the built-in app as one, check one, export one to FastAPI",
		Description: "An app file lists routes; each is a FastAPI endpoint in miniature, `async def` or `def`, made of\n" +
			"steps: external calls, sleeps, CPU work and log lines, each blocking or awaited. `demo serve --app FILE`\n" +
			"serves it; `demo app example` prints a commented one to start from.",
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			{
				Name:  "example",
				Usage: "print the built-in app (what `demo serve` runs without --app) as an app file",
				Flags: builtinFlags,
				Action: func(c *cli.Context) error {
					doc, err := appspec.Example(appspec.Mode(c.String("mode")), c.Int("calls"))
					if err != nil {
						return settingError(c, err)
					}
					_, err = os.Stdout.Write(doc)
					return err
				},
			},
			{
				Name:      "check",
				Usage:     "check an app file: exit 0 and a one-line summary, or exit 2 and FILE:LINE:COL: what is wrong",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					app, err := loadAppArg(c)
					if err != nil {
						return err
					}
					fmt.Println(app.Summary())
					return nil
				},
			},
			{
				Name:  "fastapi",
				Usage: "print the FastAPI module an app file means, ready for `uvicorn module:app` (without FILE: the built-in app)",
				Description: "Blocking calls become requests.get, awaited ones httpx.AsyncClient().get, sleeps time.sleep or\n" +
					"asyncio.sleep, cpu a busy loop, log logging lines; it logs the same lines as demo. The external\n" +
					"API's URL comes from the EXTERNAL_API environment variable, else the file's `external`.",
				ArgsUsage: "[FILE]",
				Flags:     builtinFlags,
				Action: func(c *cli.Context) error {
					var app *appspec.App
					var err error
					if c.NArg() == 0 {
						app, err = appspec.Builtin(appspec.Mode(c.String("mode")), c.Int("calls"))
						if err != nil {
							return settingError(c, err)
						}
					} else if app, err = loadAppArg(c); err != nil {
						return err
					}
					_, err = os.Stdout.Write(appspec.FastAPI(app))
					return err
				},
			},
		},
	}
}

// loadAppArg loads the FILE argument; a bad file is a usage error (exit
// 2) on one line: FILE:LINE:COL: what is wrong.
func loadAppArg(c *cli.Context) (*appspec.App, error) {
	app, err := appspec.Load(c.Args().First())
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return app, nil
}
