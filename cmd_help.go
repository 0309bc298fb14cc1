package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// helpCommand is `demo help [COMMAND [SUBCOMMAND]]`. normalizeArgs turns
// `demo help serve` into `demo serve --help`; what reaches this action is
// `demo help` alone, or a topic that is no command.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Aliases:   []string{"h"},
		Usage:     "show the commands, or one command's help (demo help serve, demo help app check)",
		ArgsUsage: "[COMMAND [SUBCOMMAND]]",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowAppHelp(c)
			}
			// The words that name a command were turned into its --help
			// (flagsFirst); the first that does not is reported at its level.
			cmds, where := c.App.Commands, "demo"
			for _, word := range c.Args().Slice() {
				if len(cmds) == 0 {
					break
				}
				cmd := findCommand(cmds, word)
				if cmd == nil {
					return badFlag("no help for %q: the commands of %s are %s", strings.Join(c.Args().Slice(), " "), where, commandList(cmds))
				}
				cmds, where = cmd.Subcommands, where+" "+cmd.Name
			}
			return badFlag("no help for %q: %s has no subcommands", strings.Join(c.Args().Slice(), " "), where)
		},
	}
}

// versionCommand is `demo version`, the same as `demo --version`.
func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print demo's version (also demo --version)",
		Action: func(c *cli.Context) error {
			cli.ShowVersion(c)
			return nil
		},
	}
}

// buildVersion, when a release build sets it (go build -ldflags
// "-X main.buildVersion=1.2.0"), is the version demo reports.
var buildVersion string

// version is buildVersion, else the module version the go command stamped
// into the binary (from the repository's tags and commit, or "(devel)")
// with the commit when the version does not name it; then the toolchain
// and platform.
func version() string {
	v, rev, dirty := "(devel)", "", false
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if buildVersion != "" {
		v = buildVersion
	} else if v == "(devel)" && rev != "" {
		v += " " + rev[:min(len(rev), 12)]
		if dirty {
			v += "+dirty"
		}
	}
	return fmt.Sprintf("%s, %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
