package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalizeArgsPutsFlagsFirst(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		// Uvicorn's order and urfave/cli's: the same command.
		{"serve app.application:app --port 9000 --workers 3", "serve --port 9000 --workers 3 app.application:app"},
		{"serve --port 9000 app:app -w 3", "serve --port 9000 -w 3 app:app"},
		// A flag's value is never taken for the APP, whatever it looks like.
		{"serve --mode async app:app --external http://x:1", "serve --mode async --external http://x:1 app:app"},
		{"serve app:app --timeout=30 --reuse-port", "serve --timeout=30 --reuse-port app:app"},
		// A bool flag takes no value: the next word is an argument.
		{"serve --reuse-port app:app", "serve --reuse-port app:app"},
		// -- ends the flags: what follows stays an argument.
		{"serve app:app -- --weird", "serve -- app:app --weird"},
		// The worker's index comes first on its command line (ps).
		{"worker 2/4 --mode mixed --calls 2", "worker --mode mixed --calls 2 2/4"},
		// Subcommands: each level's flags go with it.
		{"app check f.toml --help", "app check --help"},
		// --help shows the command's help, whatever the arguments.
		{"serve app:app -h", "serve -h"},
		{"app fastapi f.toml --mode async", "app fastapi --mode async f.toml"},
		{"bench probe --url http://x", "bench probe --url http://x"},
		// An unknown flag is left for the parser to refuse.
		{"serve app:app --nonsense 3", "serve --nonsense app:app 3"},
		// help TOPIC is the topic's --help; an unknown topic stays.
		{"help serve", "serve --help"},
		{"help app check", "app check --help"},
		{"help nosuch", "help nosuch"},
		{"nosuch --port 1", "nosuch --port 1"},
	} {
		got := normalizeArgs(app, append([]string{"demo"}, strings.Fields(tc.in)...))
		if want := append([]string{"demo"}, strings.Fields(tc.want)...); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.in, got[1:], want[1:])
		}
	}
	completion := []string{"demo", "serve", "app:app", "--wor", completionFlag}
	if got := normalizeArgs(app, completion); !slices.Equal(got, completion) {
		t.Errorf("a completion request was reordered: %q", got)
	}
}

func TestPositionalArgsFromArgsUsage(t *testing.T) {
	for usage, want := range map[string][2]int{
		"":                       {0, 0},
		"FILE":                   {1, 1},
		"[FILE]":                 {0, 1},
		"INDEX/TOTAL":            {1, 1},
		"[COMMAND [SUBCOMMAND]]": {0, 2},
		"SHELL":                  {1, 1},
	} {
		if min, max := positionalArgs(usage); min != want[0] || max != want[1] {
			t.Errorf("%q: %d..%d, want %d..%d", usage, min, max, want[0], want[1])
		}
	}
}

func TestNearestSuggestsTyposOnly(t *testing.T) {
	names := []string{"workers", "port", "timeout", "timeout-keep-alive"}
	for typed, want := range map[string]string{"wrkers": "workers", "prot": "port", "timout": "timeout", "zzz": "", "xyzzy-plugh": ""} {
		if got := nearest(typed, names); got != want {
			t.Errorf("nearest(%q) = %q, want %q", typed, got, want)
		}
	}
}

func TestParseDurationTakesSecondsAndGoDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30": 30 * time.Second, "1.5": 1500 * time.Millisecond, "0": 0, "2000": 2000 * time.Second,
		"30s": 30 * time.Second, "1m30s": 90 * time.Second, "500ms": 500 * time.Millisecond, " 5 ": 5 * time.Second,
		"-1": -time.Second, "0.0001": 100 * time.Microsecond,
	} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "30x", "abc", "NaN", "1e300", "s"} {
		if d, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", bad, d)
		}
	}
}
