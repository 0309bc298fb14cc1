package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"demo/contract"
)

// The command line as Uvicorn's and Gunicorn's users type it, run by the
// test binary playing demo (main_test.go).

// TestExtraArgumentsAreRefused: every command refuses an argument it does
// not take, instead of ignoring it.
func TestExtraArgumentsAreRefused(t *testing.T) {
	t.Parallel()
	app := newApp()
	var paths [][]string
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			path := append(slices.Clone(prefix), cmd.Name)
			if cmd.Action != nil {
				paths = append(paths, path)
			}
			walk(path, cmd.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if len(paths) < 12 {
		t.Fatalf("found only %d commands: %q", len(paths), paths)
	}
	for _, path := range paths {
		cmd := app.Commands[0]
		cmds := app.Commands
		for _, name := range path {
			cmd = findCommand(cmds, name)
			cmds = cmd.Subcommands
		}
		_, max := positionalArgs(cmd.ArgsUsage)
		args := slices.Clone(path)
		for i := range max + 1 {
			args = append(args, fmt.Sprintf("extra%d", i+1))
		}
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			_, stderr, code := runDemoEnv(t, nil, args...)
			if code != 2 || !strings.Contains(stderr, "extra1") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("demo %s: exit %d, stderr %q; want exit 2 and one line naming the arguments", strings.Join(args, " "), code, stderr)
			}
		})
	}
}

// TestEveryDurationFlagTakesSeconds: each duration flag of every command
// takes 1.5 (seconds) and 1500ms alike, and anything else is one line
// naming the flag with two dashes and both forms.
func TestEveryDurationFlagTakesSeconds(t *testing.T) {
	t.Parallel()
	app := newApp()
	n := 0
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			path := append(slices.Clone(prefix), cmd.Name)
			for _, f := range cmd.Flags {
				if !isDuration(f) {
					continue
				}
				n++
				name := f.Names()[0]
				for _, v := range []string{"1.5", "1500ms", "2"} {
					args := append(slices.Clone(path), "--"+name, v, "--help")
					if _, stderr, code := runDemoEnv(t, nil, args...); code != 0 {
						t.Errorf("demo %s: exit %d: %s", strings.Join(args, " "), code, stderr)
					}
				}
				args := append(slices.Clone(path), "--"+name, "1.5x")
				_, stderr, code := runDemoEnv(t, nil, args...)
				want := fmt.Sprintf(`demo: invalid value "1.5x" for --%s: want seconds (30, 1.5) or a duration with a unit (30s, 1m30s, 500ms)`, name)
				if code != 2 || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("demo %s: exit %d, stderr %q; want %q", strings.Join(args, " "), code, stderr, want)
				}
			}
			walk(path, cmd.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if n < 20 {
		t.Errorf("checked %d duration flags: the walk missed some", n)
	}
}

// TestFlagErrorsNameTheFlag: one line, the flag with its dashes (the
// spelling typed, or the variable it came from), exit code 2.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"serve", "--workers", "many"}, `invalid value "many" for --workers: want a whole number`},
		{nil, []string{"serve", "--workers"}, `--workers needs a value`},
		{nil, []string{"serve", "--access-log=maybe"}, `invalid value "maybe" for --access-log: want true or false`},
		{nil, []string{"serve", "--wrkers", "2"}, `unknown flag --wrkers (did you mean --workers?)`},
		{nil, []string{"serve", "-w", "0"}, `-w must be at least 1, got 0`},
		{nil, []string{"serve", "--keep-alive", "0"}, `--keep-alive must be positive, got 0s`},
		{nil, []string{"serve", "--timeout-graceful-shutdown", "-1"}, `--timeout-graceful-shutdown must be 0 (no grace) or more, got -1s`},
		{nil, []string{"serve", "--port", "70000"}, `--port must be 0-65535, got 70000`},
		{nil, []string{"serve", "--log-level", "loud"}, `--log-level "loud": want one of trace, debug, info, warning, error, critical`},
		{nil, []string{"serve", "--h11-max-incomplete-event-size", "10"}, `--h11-max-incomplete-event-size must be at least 64 bytes`},
		{nil, []string{"serve", "--root-path", "api"}, `--root-path "api": want a path that starts with /`},
		{nil, []string{"serve", "--forwarded-allow-ips", "localhost"}, `--forwarded-allow-ips "localhost": not an address`},
		{nil, []string{"serve", "-w", "2", "--workers", "3"}, `--workers and -w are the same flag: give it once`},
		{nil, []string{"serve", "--bind", "127.0.0.1:0", "--bind", "127.0.0.1:1"}, `--bind given 2 times: demo listens on one socket`},
		{nil, []string{"serve", "-b", "1.2.3.4:5:6"}, `--bind "1.2.3.4:5:6": want HOST:PORT, HOST, unix:PATH or fd://N`},
		{nil, []string{"serve", "-b", "localhost:99999"}, `--bind "localhost:99999": want HOST:PORT`},
		{nil, []string{"serve", "--host", "a/b"}, `--host "a/b": want an IP address or a host name`},
		{nil, []string{"serve", "-b", "127.0.0.1:0", "--port", "1"}, `-b and --port both say where to listen: give one`},
		{nil, []string{"external", "--port", "-1"}, `--port must be 0-65535, got -1`},
		{nil, []string{"external", "--fault", "melt"}, `--fault "melt": want one of`},
		{nil, []string{"app", "example", "--calls", "-1"}, `--calls must be 0 or more, got -1`},
		{[]string{"DEMO_WORKERS=many"}, []string{"serve"}, `invalid value "many" in DEMO_WORKERS for --workers: want a whole number`},
		{[]string{"WEB_CONCURRENCY=0"}, []string{"serve"}, `--workers (WEB_CONCURRENCY=0) must be at least 1, got 0`},
		{[]string{"DEMO_TIMEOUT=soon"}, []string{"serve"}, `invalid value "soon" in DEMO_TIMEOUT for --timeout: want seconds (30, 1.5) or a duration with a unit`},
	} {
		t.Run(strings.Join(append(tc.env, tc.args...), " "), func(t *testing.T) {
			_, stderr, code := runDemoEnv(t, tc.env, tc.args...)
			if code != 2 || !strings.HasPrefix(stderr, "demo: "+tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line starting %q", code, stderr, "demo: "+tc.want)
			}
		})
	}
}

// TestVersionHelpAndUnknownCommands: --version, -v and `demo version`;
// `demo help CMD`; an unknown command or topic exits 2 with the commands.
func TestVersionHelpAndUnknownCommands(t *testing.T) {
	t.Parallel()
	version, _, code := runDemoEnv(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(version, "demo version ") || !strings.Contains(version, "go1.") {
		t.Errorf("--version: exit %d, %q", code, version)
	}
	for _, args := range [][]string{{"-v"}, {"version"}} {
		if out, _, code := runDemoEnv(t, nil, args...); code != 0 || out != version {
			t.Errorf("demo %s: exit %d, %q; want %q", args, code, out, version)
		}
	}
	for _, topic := range [][]string{{"serve"}, {"app", "check"}, {"experiment"}} {
		want, _, _ := runDemoEnv(t, nil, append(topic, "--help")...)
		got, stderr, code := runDemoEnv(t, nil, append([]string{"help"}, topic...)...)
		if code != 0 || got != want || !strings.Contains(got, "demo "+strings.Join(topic, " ")) {
			t.Errorf("demo help %s: exit %d (%s), output differs from --help:\n%s", topic, code, stderr, got)
		}
	}
	if out, _, code := runDemoEnv(t, nil, "help"); code != 0 || !strings.Contains(out, "COMMANDS:") {
		t.Errorf("demo help: exit %d\n%s", code, out)
	}
	list := "the commands are experiment, serve, external, app, status, bench, version, help, completion, man"
	for args, want := range map[string]string{
		"serv":          `demo: unknown command "serv" (did you mean "serve"?); ` + list,
		"frobnicate":    `demo: unknown command "frobnicate"; ` + list,
		"help nosuch":   `demo: no help for "nosuch": the commands of demo are experiment, serve, external, app, status, bench, version, help, completion, man`,
		"help serve x":  `demo: no help for "serve x": demo serve has no subcommands`,
		"app chek":      `demo: unknown command "app chek" (did you mean "check"?); the commands are example, check, fastapi (see 'demo app --help')`,
		"help app frob": `demo: no help for "app frob": the commands of demo app are example, check, fastapi`,
	} {
		out, stderr, code := runDemoEnv(t, nil, strings.Fields(args)...)
		if code != 2 || out != "" || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("demo %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, stderr, want)
		}
	}
}

// TestEnvironmentConfiguresServe: every serve flag reads DEMO_<FLAG>,
// --workers also WEB_CONCURRENCY; the command line wins, then DEMO_,
// then WEB_CONCURRENCY, then the default; --help shows the variables.
func TestEnvironmentConfiguresServe(t *testing.T) {
	t.Parallel()
	help, _, _ := runDemoEnv(t, nil, "serve", "--help")
	app := newApp()
	for _, f := range findCommand(app.Commands, "serve").VisibleFlags() {
		name := f.Names()[0]
		if name == "help" {
			continue
		}
		if !strings.Contains(help, "[$"+envName(name)) {
			t.Errorf("serve --help does not show $%s for --%s", envName(name), name)
		}
	}
	for _, f := range findCommand(app.Commands, "serve").VisibleFlags() {
		if env, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, v := range env.GetEnvVars() {
				if len(contract.WithoutConfigEnv([]string{v + "=1"})) != 0 {
					t.Errorf("%s configures demo serve, but the tools' children would inherit it (contract.WithoutConfigEnv)", v)
				}
			}
		}
	}
	if !strings.Contains(help, "[$DEMO_WORKERS, $WEB_CONCURRENCY]") || !strings.Contains(help, "[$DEMO_FORWARDED_ALLOW_IPS, $FORWARDED_ALLOW_IPS]") {
		t.Errorf("serve --help does not show WEB_CONCURRENCY and FORWARDED_ALLOW_IPS")
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want int
	}{
		{[]string{"WEB_CONCURRENCY=2"}, nil, 2},
		{[]string{"WEB_CONCURRENCY=2", "DEMO_WORKERS=3"}, nil, 3},
		{[]string{"WEB_CONCURRENCY=2", "DEMO_WORKERS=3"}, []string{"-w", "1"}, 1},
	} {
		c := startServeEnv(t, tc.env, append([]string{"--port", "0", "--mode", "async"}, tc.args...)...)
		if n := workers(c); n != tc.want {
			t.Errorf("%v %v: %d workers, want %d", tc.env, tc.args, n, tc.want)
		}
	}
	// A duration in seconds and a bool from the environment reach the worker.
	c := startServeEnv(t, []string{"DEMO_TIMEOUT_KEEP_ALIVE=2.5", "DEMO_ACCESS_LOG=false", "DEMO_PORT=0"}, "--mode", "async")
	if argv := strings.Join(workerArgv(t, c), " "); !strings.Contains(argv, "--timeout-keep-alive 2.5s") || !strings.Contains(argv, "--access-log=false") {
		t.Errorf("worker argv %q", argv)
	}
	// Workers read no DEMO_ variable: serve passes them everything.
	if strings.Contains(findCommand(app.Commands, "worker").Flags[0].String(), "$DEMO") {
		t.Errorf("demo worker's flags read the environment")
	}
}

// TestNotedAndUnsupportedSpellings: Uvicorn's and Gunicorn's options that
// change nothing here are accepted and noted in the log; the ones demo
// does not support are refused with the reason.
func TestNotedAndUnsupportedSpellings(t *testing.T) {
	t.Parallel()
	var args []string
	var want []*regexp.Regexp
	for _, s := range spellings {
		for _, name := range slices.Concat(s.uvicorn, s.gunicorn) {
			if name == "APP" {
				continue
			}
			switch s.kind {
			case noted:
				if slices.Contains(args, name) {
					continue
				}
				args = append(args, name)
				given := name
				if s.takesValue {
					args = append(args, "x1")
					given += " x1"
				}
				want = append(want, regexp.MustCompile(`INFO `+regexp.QuoteMeta(given+" noted, changes nothing: "+s.demo)+`$`))
			case unsupported:
				_, stderr, code := runDemoEnv(t, nil, "serve", name)
				if want := fmt.Sprintf("demo: %s is not supported: %s", name, s.demo); code != 2 || !strings.HasPrefix(stderr, want) {
					t.Errorf("demo serve %s: exit %d, %q; want %q", name, code, stderr, want)
				}
			}
		}
	}
	c := startServeEnv(t, nil, append([]string{"--port", "0", "--mode", "async"}, args...)...)
	for _, re := range want {
		waitLine(t, c, re)
	}
	help, _, _ := runDemoEnv(t, nil, "serve", "--help")
	if strings.Contains(help, "--loop") || strings.Contains(help, "--worker-class") {
		t.Errorf("serve --help lists the noted spellings:\n%s", help)
	}
}

// TestShellCompletion: bash, with the script demo prints, completes
// commands and flags from the binary, and not the hidden ones.
func TestShellCompletion(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to try the completion in")
	}
	script, _, code := runDemoEnv(t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("demo completion bash: exit %d", code)
	}
	dir := t.TempDir()
	if err := os.Symlink(demoBin, filepath.Join(dir, "demo")); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS as bash sets them, the last one being completed.
		line := fmt.Sprintf(`%s
COMP_WORDS=(%s); COMP_CWORD=%d; _demo_complete; printf '%%s\n' "${COMPREPLY[@]}"`,
			script, strings.Join(words, " "), len(words)-1)
		cmd := exec.Command(bash, "--norc", "-c", line)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash: %v", err)
		}
		return strings.Fields(string(out))
	}
	if got := complete("demo", "se"); !slices.Equal(got, []string{"serve"}) {
		t.Errorf("demo se<TAB>: %q", got)
	}
	if got := complete("demo", "serve", "--wor"); !slices.Equal(got, []string{"--workers"}) {
		t.Errorf("demo serve --wor<TAB>: %q", got)
	}
	if got := complete("demo", "app", ""); !slices.Equal(got, []string{"example", "check", "fastapi"}) {
		t.Errorf("demo app <TAB>: %q", got)
	}
	if got := complete("demo", "serve", "--lo"); slices.Contains(got, "--loop") || !slices.Contains(got, "--log-level") {
		t.Errorf("demo serve --lo<TAB>: %q (--loop is hidden)", got)
	}
	if got := complete("demo", ""); slices.Contains(got, "worker") || !slices.Contains(got, "experiment") {
		t.Errorf("demo <TAB>: %q (worker is hidden)", got)
	}
	for _, shell := range []string{"zsh", "fish"} {
		if out, _, code := runDemoEnv(t, nil, "completion", shell); code != 0 || !strings.Contains(out, "demo") {
			t.Errorf("demo completion %s: exit %d", shell, code)
		}
	}
}

// TestManPage: `demo man` is a roff page with every command and every
// visible flag of serve, and man(1) renders it without complaint.
func TestManPage(t *testing.T) {
	t.Parallel()
	page, stderr, code := runDemoEnv(t, nil, "man")
	if code != 0 || !strings.HasPrefix(page, ".nh\n.TH demo 1") {
		t.Fatalf("demo man: exit %d (%s), starts %q", code, stderr, page[:min(len(page), 40)])
	}
	app := newApp()
	for _, cmd := range app.VisibleCommands() {
		if !strings.Contains(page, cmd.Name) {
			t.Errorf("the man page lacks the command %s", cmd.Name)
		}
	}
	for _, f := range findCommand(app.Commands, "serve").VisibleFlags() {
		name := f.Names()[0]
		if !strings.Contains(page, "--"+name) || (name != "help" && !strings.Contains(page, `\fB`+envName(name)+`\fP`)) {
			t.Errorf("the man page lacks --%s or its variable %s", name, envName(name))
		}
	}
	man, err := exec.LookPath("man")
	if err != nil {
		t.Skip("no man to render the page with")
	}
	file := filepath.Join(t.TempDir(), "demo.1")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "--warnings", "-l", file)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=100")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "timeout-keep-alive") || strings.Contains(string(out), ": warning") {
		t.Errorf("man -l demo.1: %v\n%s", err, out)
	}
}
