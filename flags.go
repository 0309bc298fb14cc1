package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"demo/contract"
	"demo/setting"
)

// durationValue is every duration flag's value: a Go duration (30s, 1m30s,
// 500ms) or, as Uvicorn and Gunicorn take their timeouts, a bare number of
// seconds (30, 1.5). String gives the Go form, which is what
// cli.Context.Duration parses: commands read these flags as durations.
type durationValue time.Duration

// errDurationSyntax is the whole hint a bad duration gets: both forms.
var errDurationSyntax = errors.New("want seconds (30, 1.5) or a duration with a unit (30s, 1m30s, 500ms)")

func (d *durationValue) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string { return time.Duration(*d).String() }

// parseDuration reads a Go duration or a number of seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.Abs(f) > math.MaxInt64/1e9 {
			return 0, errDurationSyntax
		}
		return time.Duration(math.Round(f * 1e9)), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	return 0, errDurationSyntax
}

// durationsTakeSeconds swaps every cli.DurationFlag of cmds (and their
// subcommands) for a flag with a durationValue, so that a duration flag
// added anywhere takes bare seconds too, and its value is still read with
// c.Duration.
func durationsTakeSeconds(cmds []*cli.Command) {
	for _, cmd := range cmds {
		for i, f := range cmd.Flags {
			df, ok := f.(*cli.DurationFlag)
			if !ok {
				continue
			}
			if df.Destination != nil || df.Action != nil || df.FilePath != "" {
				panic("flag --" + df.Name + ": Destination, Action and FilePath are not carried over to the seconds-taking flag")
			}
			v := durationValue(df.Value)
			cmd.Flags[i] = &cli.GenericFlag{
				Name: df.Name, Aliases: df.Aliases, Usage: df.Usage, EnvVars: df.EnvVars,
				Hidden: df.Hidden, Category: df.Category, DefaultText: df.DefaultText, Required: df.Required,
				Value: &v,
			}
		}
		durationsTakeSeconds(cmd.Subcommands)
	}
}

// isDuration reports whether f is a duration flag (after durationsTakeSeconds).
func isDuration(f cli.Flag) bool {
	if g, ok := f.(*cli.GenericFlag); ok {
		_, ok = g.Value.(*durationValue)
		return ok
	}
	_, ok := f.(*cli.DurationFlag)
	return ok
}

// envName is the environment variable a serve flag also reads: DEMO_ and
// its name in capitals, dashes as underscores (DEMO_TIMEOUT_KEEP_ALIVE).
func envName(flag string) string {
	return contract.ConfigEnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fromEnvironment makes each visible flag read DEMO_<FLAG> too, then the
// variables also names for it (Uvicorn's WEB_CONCURRENCY), so a value comes
// from the command line, else the environment, else the default
// (urfave/cli's EnvVars), and `--help` shows the variables.
func fromEnvironment(flags []cli.Flag, also map[string][]string) []cli.Flag {
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		field := reflect.ValueOf(f).Elem().FieldByName("EnvVars")
		if !field.IsValid() {
			panic(fmt.Sprintf("flag %T has no EnvVars", f))
		}
		name := f.Names()[0]
		vars := append([]string{envName(name)}, also[name]...)
		field.Set(reflect.ValueOf(vars))
	}
	return flags
}

// dashed spells a flag as a user types it: -w, --workers.
func dashed(name string) string {
	if len([]rune(name)) == 1 {
		return "-" + name
	}
	return "--" + name
}

// usageError turns a flag-parsing failure into one line naming the flag
// with its dashes and what it takes, and exit code 2, instead of
// urfave/cli's default of printing the whole help text.
func usageError(c *cli.Context, err error, _ bool) error {
	return cli.Exit(fmt.Sprintf("%s (see '%s --help')", explainParseError(c, err), helpName(c)), exitUsage)
}

func helpName(c *cli.Context) string {
	if c.Command != nil && c.Command.HelpName != "" {
		return c.Command.HelpName
	}
	return c.App.Name
}

// The errors Go's flag package and urfave/cli's environment lookup make.
var (
	errUndefined   = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	errNeedsValue  = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	errBadBool     = regexp.MustCompile(`^invalid boolean value (".*") for -+([^:]+): `)
	errBadValue    = regexp.MustCompile(`^invalid value (".*") for flag -+([^:]+): (.*)$`)
	errTwoForms    = regexp.MustCompile(`^Cannot use two forms of the same flag: (\S+) (\S+)$`)
	errBadEnvValue = regexp.MustCompile(`^could not parse (".*?") (?:as \S+ value )?from environment variable "([^"]+)" (?:as value )?for flag ([^:]+): (.*)$`)
)

func explainParseError(c *cli.Context, err error) string {
	msg := err.Error()
	if m := errUndefined.FindStringSubmatch(msg); m != nil {
		return unknownFlag(c, m[1])
	}
	if m := errNeedsValue.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s needs a value: %s", dashed(m[1]), valueHint(lookupFlag(c, m[1]), ""))
	}
	if m := errBadBool.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("invalid value %s for %s: want true or false (%s=false)", m[1], dashed(m[2]), dashed(m[2]))
	}
	if m := errBadValue.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("invalid value %s for %s: %s", m[1], dashed(m[2]), valueHint(lookupFlag(c, m[2]), m[3]))
	}
	if m := errTwoForms.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s and %s are the same flag: give it once", dashed(m[2]), dashed(m[1]))
	}
	if m := errBadEnvValue.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("invalid value %s in %s for %s: %s", m[1], m[2], dashed(m[3]), valueHint(lookupFlag(c, m[3]), m[4]))
	}
	return msg
}

// valueHint says what a flag takes, for an error about its value; why is
// the parser's own complaint, kept when it says more than "parse error".
func valueHint(f cli.Flag, why string) string {
	switch {
	case f == nil:
	case isDuration(f):
		return errDurationSyntax.Error()
	default:
		switch f.(type) {
		case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
			if strings.Contains(why, "out of range") {
				return "out of range"
			}
			return "want a whole number"
		case *cli.Float64Flag:
			return "want a number"
		case *cli.BoolFlag:
			return "want true or false"
		}
	}
	if why == "" || strings.Contains(why, "parse error") || strings.Contains(why, "invalid syntax") {
		return "not understood"
	}
	return why
}

// lookupFlag finds the flag name (or alias) of the command c runs.
func lookupFlag(c *cli.Context, name string) cli.Flag {
	flags := c.App.Flags
	if c.Command != nil {
		flags = c.Command.Flags
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// unknownFlag explains a flag the command does not have: one of Uvicorn's
// or Gunicorn's that demo does not support says why; a near miss gets a
// suggestion.
func unknownFlag(c *cli.Context, name string) string {
	if why, ok := whyUnsupported(c, name); ok {
		return fmt.Sprintf("%s is not supported: %s", dashed(name), why)
	}
	msg := "unknown flag " + dashed(name)
	flags := c.App.Flags
	if c.Command != nil {
		flags = c.Command.Flags
	}
	var names []string
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); !ok || v.IsVisible() {
			names = append(names, f.Names()...)
		}
	}
	if s := nearest(name, names); s != "" {
		msg += " (did you mean " + dashed(s) + "?)"
	}
	return msg
}

// badFlag is a usage error: one line, exit code 2.
func badFlag(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}

// settingFlags maps each setting a package names in its *setting.Error to
// the flag that sets it (the worker's are in workerSettings): the packages
// own the rules, the command line only says where the value came from.
var settingFlags = map[string]string{
	// supervisor
	"Workers":            "workers",
	"GracefulTimeout":    "timeout-graceful-shutdown",
	"HealthcheckTimeout": "timeout-worker-healthcheck",
	"Timeout":            "timeout",
	// sockets
	"Host":    "host",
	"Port":    "port",
	"Backlog": "backlog",
	"FD":      "fd",
	"Path":    "uds",
	// appspec (the built-in app)
	"Mode":  "mode",
	"Calls": "calls",
	// logs
	"Level":  "log-level",
	"Format": "log-format",
	// external
	"Delay":     "delay",
	"Fault":     "fault",
	"FaultRate": "fault-rate",
	"Listeners": "listeners",
}

// flagOfSetting returns the flag that sets a package's setting name.
func flagOfSetting(name string) (string, bool) {
	for _, s := range workerSettings {
		if s.field == name {
			return s.flag, true
		}
	}
	flag, ok := settingFlags[name]
	return flag, ok
}

// settingError maps a package's *setting.Error to the flag or environment
// variable the value came from, as a usage error (exit code 2); any other
// error is returned as it is.
func settingError(c *cli.Context, err error) error {
	e, ok := setting.As(err)
	if !ok {
		return err
	}
	name, ok := flagOfSetting(e.Name)
	if !ok || lookupFlag(c, name) == nil {
		return badFlag("%v", err) // a setting no flag of this command sets
	}
	return badFlag("%s %v", source(c, name), e.Err)
}

// source names where a flag's value came from: the spelling the user typed
// (--keep-alive for --timeout-keep-alive), or the environment variable.
func source(c *cli.Context, name string) string {
	f := lookupFlag(c, name)
	if f == nil {
		return dashed(name)
	}
	typed := ""
	for _, n := range f.Names() {
		if flagTyped(n) {
			typed = n
		}
	}
	if typed != "" {
		return dashed(typed)
	}
	if env, ok := f.(interface{ GetEnvVars() []string }); ok {
		for _, v := range env.GetEnvVars() {
			if val, ok := os.LookupEnv(v); ok {
				return fmt.Sprintf("%s (%s=%s)", dashed(name), v, val)
			}
		}
	}
	return dashed(name)
}

// flagTyped reports whether name itself (not an alias of it) is on the
// command line.
func flagTyped(name string) bool {
	for _, a := range os.Args[1:] {
		if a == "--" {
			return false
		}
		a, _, _ = strings.Cut(a, "=")
		if a == "-"+name || a == "--"+name {
			return true
		}
	}
	return false
}
