package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// urfave/cli (through Go's flag package) stops reading flags at the first
// argument that is not one, and says nothing: `demo serve app:app --port
// 9000` would serve on port 8000 with an argument "--port". Uvicorn and
// Gunicorn take flags before and after their APP, so normalizeArgs moves
// every flag of the command being run, with its value, in front of the
// positional arguments before urfave/cli sees them. Knowing which flags
// take a value comes from the flag definitions themselves, so a new flag
// needs nothing here. `--` still ends the flags.

// normalizeArgs returns args (os.Args) with each command's flags before its
// positional arguments, and `demo help CMD [SUB]` as `demo CMD [SUB]
// --help`. Shell completion requests are left as they are: they carry a
// half-typed command line.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == completionFlag {
		return args
	}
	rest := args[1:]
	if path, ok := helpTopic(app.Commands, rest); ok {
		rest = append(path, "--help")
	}
	return append([]string{args[0]}, flagsFirst(app.Commands, app.Flags, rest)...)
}

// completionFlag ends the command line of a completion request
// (urfave/cli's EnableBashCompletion).
const completionFlag = "--generate-bash-completion"

// helpTopic recognises `help CMD [SUB]` where CMD (and SUB) exist, and
// returns the command path.
func helpTopic(cmds []*cli.Command, args []string) ([]string, bool) {
	if len(args) < 2 || (args[0] != "help" && args[0] != "h") {
		return nil, false
	}
	var path []string
	for _, name := range args[1:] {
		cmd := findCommand(cmds, name)
		if cmd == nil || strings.HasPrefix(name, "-") {
			return nil, false
		}
		path = append(path, name)
		cmds = cmd.Subcommands
	}
	return path, true
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// flagsFirst reorders the arguments of one command level: flags (with
// their values) first, then positional arguments. A first positional
// argument that names a subcommand starts the subcommand's level.
func flagsFirst(cmds []*cli.Command, flags []cli.Flag, args []string) []string {
	var opts, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			// Everything after it is positional; keep the marker so that
			// what looks like a flag stays an argument.
			out := append(opts, "--")
			return append(append(out, positional...), args[i+1:]...)
		case strings.HasPrefix(a, "-") && a != "-":
			opts = append(opts, a)
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !hasValue && takesValue(flags, name) && i+1 < len(args) {
				i++
				opts = append(opts, args[i])
			}
		case len(positional) == 0 && findCommand(cmds, a) != nil:
			sub := findCommand(cmds, a)
			next := append(opts, a)
			return append(next, flagsFirst(sub.Subcommands, sub.Flags, args[i+1:])...)
		case len(positional) == 0 && len(cmds) > 0:
			// Not a command where one is expected: leave the rest as it is,
			// for the parser to report the unknown command.
			return append(opts, args[i:]...)
		default:
			positional = append(positional, a)
		}
	}
	if slices.Contains(opts, "--help") || slices.Contains(opts, "-h") {
		// urfave/cli would take the first argument for a help topic
		// (`demo serve app:app --help`: "No help topic for 'app:app'").
		return opts
	}
	if len(positional) > 0 && slices.ContainsFunc(positional, func(p string) bool { return strings.HasPrefix(p, "-") }) {
		opts = append(opts, "--")
	}
	return append(opts, positional...)
}

// takesValue reports whether the flag called name (or aliased so) takes a
// value; an unknown flag is taken as not, and the parser then rejects it.
func takesValue(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		if v, ok := f.(cli.DocGenerationFlag); ok {
			return v.TakesValue()
		}
		return false
	}
	return false
}

// positionalArgs is what a command's ArgsUsage promises: its bracketed
// words are optional (`[FILE]`), the others required (`INDEX/TOTAL`).
func positionalArgs(usage string) (min, max int) {
	depth := 0
	for _, word := range strings.Fields(usage) {
		opens := strings.Count(word, "[")
		depth += opens
		if strings.Trim(word, "[]") != "" {
			max++
			if depth == 0 {
				min++
			}
		}
		depth -= strings.Count(word, "]")
	}
	return min, max
}

// checkArgs makes every command (subcommands included) refuse positional
// arguments its ArgsUsage does not announce: an extra argument is an
// error, never silently ignored.
func checkArgs(cmds []*cli.Command) {
	for _, cmd := range cmds {
		checkArgs(cmd.Subcommands)
		if cmd.Action == nil {
			continue
		}
		action, usage := cmd.Action, cmd.ArgsUsage
		min, max := positionalArgs(usage)
		cmd.Action = func(c *cli.Context) error {
			if n := c.NArg(); n < min || n > max {
				takes, got := usage, "none"
				if max == 0 {
					takes = "no arguments"
				}
				if n > 0 {
					got = fmt.Sprintf("%q", c.Args().Slice())
				}
				return badFlag("%s takes %s, got %s (see '%s --help')", c.Command.HelpName, takes, got, c.Command.HelpName)
			}
			return action(c)
		}
	}
}

// commandList names the visible commands, for an unknown one.
func commandList(cmds []*cli.Command) string {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// unknownCommand is the root's action, and the action of every command
// that only groups subcommands (`demo app`): alone it shows the help, any
// other word is not a command there.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		if c.Command != nil && len(c.Command.Subcommands) > 0 {
			return cli.ShowSubcommandHelp(c)
		}
		return cli.ShowAppHelp(c)
	}
	cmds, where := c.App.Commands, "demo"
	if c.Command != nil && len(c.Command.Subcommands) > 0 {
		cmds, where = c.Command.Subcommands, c.Command.HelpName
	}
	return notACommand(c.Args().First(), cmds, where)
}

// notACommand is the error for a word that is not one of cmds, the
// commands of where ("demo", "demo app"), with the nearest as a hint.
func notACommand(name string, cmds []*cli.Command, where string) error {
	msg := fmt.Sprintf("unknown command %q", strings.TrimPrefix(where+" "+name, "demo "))
	var names []string
	for _, cmd := range cmds {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	if s := nearest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return badFlag("%s; the commands are %s (see '%s --help')", msg, commandList(cmds), where)
}

// nearest returns the candidate closest to what the user typed, if it is
// close enough to be a typo: at most a third of its letters wrong.
func nearest(typed string, candidates []string) string {
	best, bestDist := "", len(typed)/3+1
	for _, c := range candidates {
		if d := editDistance(typed, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of two neighbours that turn a into b (the optimal string alignment
// distance), in bytes.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
