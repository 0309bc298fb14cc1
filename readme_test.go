package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
)

// The README is documentation a newcomer copies from: its commands must
// still run, its flag table must list every flag, its table of Uvicorn's
// and Gunicorn's spellings must say what the binary does, and its package
// graph must be the one go list sees.

var updateREADME = flag.Bool("update-readme", false, "rewrite the README's generated parts: the table of Uvicorn's and Gunicorn's spellings (from foreign.go), the package graph (from go list)")

func readREADME(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// readmeCommand is a demo command line of the README.
type readmeCommand struct {
	env     []string // VAR=value in front of it
	args    []string // after demo
	section string   // the ## section it is in
	// shows is the line the README shows it answering with, when that is
	// an error (`demo: ...`).
	shows string
}

// readmeCommands returns the demo command lines of the README: the lines
// of its ```sh blocks and the `$ ` lines of its output samples, split at
// shell separators.
func readmeCommands(readme string) []readmeCommand {
	var cmds []readmeCommand
	inBlock, sh, section := false, false, ""
	var continued string
	lines := strings.Split(readme, "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if title, ok := strings.CutPrefix(line, "## "); ok && !inBlock {
			section = title
		}
		if strings.HasPrefix(trimmed, "```") {
			inBlock, sh = !inBlock, trimmed == "```sh"
			continue
		}
		if !inBlock {
			continue
		}
		if continued != "" {
			trimmed, continued = continued+" "+trimmed, ""
		}
		cmd, prompt := strings.CutPrefix(trimmed, "$ ")
		if !sh && !prompt {
			continue
		}
		if c, ok := strings.CutSuffix(cmd, `\`); ok {
			continued = "$ " + c
			continue
		}
		shows := ""
		if prompt && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "demo: ") {
			shows = lines[i+1]
		}
		for _, part := range regexp.MustCompile(`\s(?:&&|&|;|\|)\s?`).Split(stripComment(cmd), -1) {
			words := withoutRedirection(shellWords(part))
			var env []string
			for len(words) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(words[0]) {
				env, words = append(env, words[0]), words[1:]
			}
			if len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "." {
				words = words[2:] // `go run . experiment` is demo experiment
			}
			if len(words) > 0 && (words[0] == "demo" || words[0] == "./demo" || words[0] == ".") {
				cmds = append(cmds, readmeCommand{env: env, args: words[1:], section: section, shows: shows})
			}
		}
	}
	return cmds
}

// stripComment drops a trailing `# comment` (after whitespace, outside quotes).
func stripComment(s string) string {
	quote := rune(0)
	for i, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote = r
		case quote == 0 && r == '#' && i > 0 && (s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

// shellWords splits a simple shell command: words, "double" and 'single'
// quotes, no expansions.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// withoutRedirection drops a redirection and what follows it.
func withoutRedirection(words []string) []string {
	if i := slices.IndexFunc(words, func(w string) bool { return w == ">" || w == "<" || w == "2>" || w == "2>&1" }); i >= 0 {
		return words[:i]
	}
	return words
}

// TestREADMECommands: every demo command in the README is one the binary
// accepts — its command, subcommand, flags and values — checked by running
// it with --help, which parses everything and then stops. The error
// samples of the Flags section need no files or servers: they are run as
// shown, and must answer exactly what the README shows.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	cmds := readmeCommands(readREADME(t))
	if len(cmds) < 25 {
		t.Fatalf("found only %d demo commands in the README: %q", len(cmds), cmds)
	}
	seen := map[string]bool{}
	samples := 0
	for _, c := range cmds {
		key := strings.Join(append(slices.Clone(c.env), c.args...), " ")
		if seen[key] || len(c.args) == 0 {
			continue
		}
		seen[key] = true
		if c.shows != "" && c.section == "Flags" {
			samples++
			_, stderr, code := runDemoEnv(t, c.env, c.args...)
			if got := strings.TrimSuffix(stderr, "\n"); code != 2 || got != c.shows {
				t.Errorf("README: demo %s: exit %d,\n%s\nwhere the README shows\n%s", key, code, got, c.shows)
			}
			continue
		}
		_, stderr, code := runDemoEnv(t, c.env, append(slices.Clone(c.args), "--help")...)
		if code != 0 && !(c.shows != "" && code == 2) {
			t.Errorf("README: demo %s: exit %d: %s", key, code, stderr)
		}
	}
	if samples < 5 {
		t.Errorf("checked %d error samples of the Flags section, want at least 5", samples)
	}
}

// readmeSection returns the text of the `## title` section.
func readmeSection(t *testing.T, readme, title string) string {
	t.Helper()
	start := strings.Index(readme, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("README has no section %q", title)
	}
	rest := readme[start+1:]
	if end := strings.Index(rest[3:], "\n## "); end >= 0 {
		return rest[:end+3]
	}
	return rest
}

// TestREADMEFlagsTableIsComplete: the Flags section names every flag of
// demo serve and demo external, and every --flag the README shows in
// backticks is a flag demo has, or one of Uvicorn's or Gunicorn's
// spellings it lists.
func TestREADMEFlagsTableIsComplete(t *testing.T) {
	readme := readREADME(t)
	flags := readmeSection(t, readme, "Flags")
	app := newApp()
	for _, name := range []string{"serve", "external"} {
		for _, f := range findCommand(app.Commands, name).VisibleFlags() {
			for _, n := range f.Names() {
				if n != "help" && n != "h" && !strings.Contains(flags, "`"+dashed(n)) {
					t.Errorf("the README's Flags section does not mention demo %s %s", name, dashed(n))
				}
			}
		}
	}
	known := map[string]bool{}
	everyCommand(app.Commands, func(cmd *cli.Command) {
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				known[n] = true
			}
		}
	})
	for _, s := range spellings {
		for _, n := range slices.Concat(s.uvicorn, s.gunicorn) {
			known[strings.TrimLeft(n, "-")] = true
		}
	}
	for _, f := range []cli.Flag{cli.HelpFlag, cli.VersionFlag} {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	for _, m := range regexp.MustCompile("`[^`\n]*`").FindAllString(readme, -1) {
		for _, f := range regexp.MustCompile(`(?:^|[\s\x60(])--([a-z0-9][a-z0-9_-]*)`).FindAllStringSubmatch(m, -1) {
			if !known[f[1]] && !readmeForeignFlags[f[1]] {
				t.Errorf("the README shows %s, which no demo command has: %s", "--"+f[1], m)
			}
		}
	}
}

// readmeForeignFlags are flags of other programs the README shows.
var readmeForeignFlags = map[string]bool{
	"forest":       true, // ps
	"stop-timeout": true, // docker run
}

// spellingsTable renders foreign.go's table for the README.
func spellingsTable() string {
	kinds := map[spellingKind]string{
		same:        "same flag:",
		alias:       "demo's flag:",
		noted:       "accepted, and noted in the log:",
		unsupported: "refused, with the reason:",
	}
	code := func(names []string) string {
		var out []string
		for _, n := range names {
			out = append(out, "`"+n+"`")
		}
		return strings.Join(out, ", ")
	}
	var b strings.Builder
	b.WriteString("| Uvicorn | Gunicorn | what `demo serve` does |\n| --- | --- | --- |\n")
	for _, s := range spellings {
		b.WriteString("| " + code(s.uvicorn) + " | " + code(s.gunicorn) + " | " + kinds[s.kind] + " " + s.demo + " |\n")
	}
	return b.String()
}

// TestREADMESpellings: the README's table of Uvicorn's and Gunicorn's
// spellings is foreign.go's, which the binary acts on (and
// TestNotedAndUnsupportedSpellings runs).
func TestREADMESpellings(t *testing.T) {
	checkGenerated(t, "the table of spellings", "made from foreign.go by `go test -run TestREADMESpellings -update-readme`", spellingsTable())
}

// TestREADMEPackageGraph: the README's package graph is go list's.
func TestREADMEPackageGraph(t *testing.T) {
	checkGenerated(t, "the package graph", "made from go list by `go test -run TestREADMEPackageGraph -update-readme`", packageGraph(importGraph(t)))
}

// checkGenerated holds the README's block between
//
//	<!-- what: how -->
//	<!-- end of what -->
//
// to want, or with -update-readme rewrites it.
func checkGenerated(t *testing.T, what, how, want string) {
	t.Helper()
	readme := readREADME(t)
	startMark, endMark := "<!-- "+what+": "+how+" -->\n", "<!-- end of "+what+" -->\n"
	start, end := strings.Index(readme, startMark), strings.Index(readme, endMark)
	if start < 0 || end < start {
		t.Fatalf("README lacks the markers of %s:\n%s%s", what, startMark, endMark)
	}
	got := readme[start+len(startMark) : end]
	if got == want {
		return
	}
	if !*updateREADME {
		t.Fatalf("%s in the README is out of date; to rewrite it: go test -run %s -update-readme\n got:\n%s\nwant:\n%s", what, t.Name(), got, want)
	}
	updated := readme[:start+len(startMark)] + want + readme[end:]
	if err := os.WriteFile("README.md", []byte(updated), 0o644); err != nil {
		t.Fatal(err)
	}
}

// packageGraph draws graph (each package of ours and the packages of ours
// it imports directly) for the README: package main's imports in a
// sentence — it wires every role together — and the rest as a Mermaid
// flowchart.
func packageGraph(graph map[string][]string) string {
	var pkgs []string
	imported := map[string]bool{}
	for p, deps := range graph {
		if p != "." {
			pkgs = append(pkgs, p)
			for _, d := range deps {
				imported[d] = true
			}
		}
	}
	slices.Sort(pkgs)
	// Mermaid's node ids take no slash: eventloop/client is
	// eventloop_client["eventloop/client"].
	node := func(p string) string { return strings.ReplaceAll(p, "/", "_") }
	var b strings.Builder
	b.WriteString(wrap("Package main, the command line, imports "+strings.Join(slices.Sorted(slices.Values(graph["."])), ", ")+". The others import:", 90))
	b.WriteString("\n```mermaid\nflowchart LR\n")
	for _, p := range pkgs {
		if node(p) != p || len(graph[p]) == 0 && !imported[p] {
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", node(p), p)
		}
	}
	for _, p := range pkgs {
		for _, d := range slices.Sorted(slices.Values(graph[p])) {
			fmt.Fprintf(&b, "  %s --> %s\n", node(p), node(d))
		}
	}
	b.WriteString("```\n")
	return b.String()
}

// wrap breaks text into lines of at most width columns, between words.
func wrap(text string, width int) string {
	var b strings.Builder
	line := 0
	for _, w := range strings.Fields(text) {
		n := utf8.RuneCountInString(w)
		switch {
		case line == 0:
		case line+1+n > width:
			b.WriteString("\n")
			line = 0
		default:
			b.WriteString(" ")
			line++
		}
		b.WriteString(w)
		line += n
	}
	return b.String() + "\n"
}
