package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"demo/worker"
)

// parseWorkerArgv runs argv (as serve builds it) through the real worker
// command's flags and workerConfig, in process, and returns the Config.
func parseWorkerArgv(t *testing.T, argv []string) worker.Config {
	t.Helper()
	app := newApp()
	var got worker.Config
	everyCommand(app.Commands, func(cmd *cli.Command) {
		if cmd.Name != "worker" {
			return
		}
		cmd.Action = func(c *cli.Context) error {
			cfg, err := workerConfig(c, nil)
			if err != nil {
				return err
			}
			cfg.Index, cfg.Total, err = parseWorkerPosition(c.Args().First())
			got = cfg
			return err
		}
	})
	app.ExitErrHandler = func(*cli.Context, error) {}
	if err := app.Run(normalizeArgs(app, argv)); err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	return got
}

// TestWorkerArgvRoundTrip: every worker.Config setting serve puts on a
// worker's command line comes back the same when the worker parses it.
// Every field either travels (workerSettings) or is the process's own
// (workerLocal): a new field fails here until it is one of them.
func TestWorkerArgvRoundTrip(t *testing.T) {
	typ := reflect.TypeFor[worker.Config]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		travels := slices.ContainsFunc(workerSettings, func(s struct{ field, flag string }) bool { return s.field == name })
		if travels == slices.Contains(workerLocal, name) {
			t.Errorf("worker.Config.%s must be in exactly one of workerSettings and workerLocal", name)
		}
	}

	// Every travelling setting away from its default, and valid.
	cfg := worker.DefaultConfig()
	cfg.Index, cfg.Total = 3, 4
	cfg.Mode, cfg.Calls = worker.Threadpool, 5
	cfg.External = "http://10.0.0.9:8080/api"
	cfg.ExternalTimeout = 1500 * time.Millisecond
	cfg.ThreadpoolSize = 7
	cfg.AccessLog = false
	cfg.LimitConcurrency = 9
	cfg.KeepAliveTimeout = 2500 * time.Millisecond
	cfg.RequestHeaderTimeout = 3 * time.Second
	cfg.RequestBodyTimeout = 7 * time.Second
	cfg.MaxBodyBytes = 12345
	cfg.MaxBufferedBodyBytes = 1 << 20
	cfg.HTTPParser = "net/http"
	cfg.MaxHeaderBytes = 4096
	cfg.ProxyHeaders = false
	cfg.ForwardedAllowIPs = "10.0.0.0/8, unix"
	cfg.RootPath = "/api"
	cfg.SlowCallback = 0
	cfg.MaxRequests = 104
	cfg.EpollExclusive = true
	cfg.ReusePortAddr = "127.0.0.1:4711"
	cfg.Backlog = 99
	defaults := reflect.ValueOf(worker.DefaultConfig())
	for _, s := range workerSettings {
		if s.field == "AppFile" {
			continue // the other round trip below
		}
		if reflect.ValueOf(cfg).FieldByName(s.field).Equal(defaults.FieldByName(s.field)) {
			t.Errorf("the round trip leaves %s at its default: set it", s.field)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := logSettings{level: "debug", format: "json"}
	argv := workerCommandLine(cfg, logs)
	got := parseWorkerArgv(t, argv)
	cfg.StructuredLog = true // --log-format json
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("argv %q\n  parsed %+v\nwant     %+v", argv, got, cfg)
	}
	if !slices.Contains(argv, "--log-level") || !slices.Contains(argv, "json") {
		t.Errorf("argv %q lacks the log settings", argv)
	}

	// An app file: the path travels, the built-in app's settings do not.
	app := worker.DefaultConfig()
	app.AppFile, app.External = "/srv/app.toml", ""
	argv = workerCommandLine(app, logSettings{level: "info", format: "console"})
	if got := parseWorkerArgv(t, argv); !reflect.DeepEqual(got, app) {
		t.Errorf("argv %q\n  parsed %+v\nwant     %+v", argv, got, app)
	}
	if line := strings.Join(argv, " "); line != "demo worker 1/1 --app /srv/app.toml" {
		t.Errorf("app file worker's argv %q", line)
	}
}

// TestWorkerArgvIsShort: defaults stay off the command line, but for the
// mode, so ps says what each worker runs.
func TestWorkerArgvIsShort(t *testing.T) {
	cfg := worker.DefaultConfig()
	cfg.Index, cfg.Total = 2, 4
	if got := strings.Join(workerCommandLine(cfg, logSettings{level: "info", format: "console"}), " "); got != "demo worker 2/4 --mode mixed" {
		t.Errorf("argv %q", got)
	}
}

// TestEverySettingErrorNamesAFlag: each setting a package's Validate can
// name maps to a flag of the command that checks it.
func TestEverySettingErrorNamesAFlag(t *testing.T) {
	app := newApp()
	flagsOf := func(path ...string) map[string]bool {
		cmds, names := app.Commands, map[string]bool{}
		var cmd *cli.Command
		for _, p := range path {
			cmd = findCommand(cmds, p)
			cmds = cmd.Subcommands
		}
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				names[n] = true
			}
		}
		return names
	}
	serve, external, example := flagsOf("serve"), flagsOf("external"), flagsOf("app", "example")
	for setting := range settingFlags {
		flag, _ := flagOfSetting(setting)
		if !serve[flag] && !external[flag] && !example[flag] && !flagsOf("worker")[flag] {
			t.Errorf("setting %s maps to --%s, which no command has", setting, flag)
		}
	}
	for _, s := range workerSettings {
		if !flagsOf("worker")[s.flag] {
			t.Errorf("workerSettings: demo worker has no --%s", s.flag)
		}
		if !serve[s.flag] && !serveSetsItself[s.flag] {
			t.Errorf("workerSettings: demo serve has no --%s to pass on", s.flag)
		}
	}
}
