package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The package layout is the architecture: each package is one role, and
// which role may use which is written here, one row per package, and
// checked against `go list`. A rule covers its package and every package
// below it ("eventloop" is also eventloop/client) and holds for
// dependencies through other packages of ours too, not only direct
// imports. Production code only: a test may start what it exercises —
// except in e2e, whose tests are all there is of it.
//
// Adding a package is adding its row; the test fails until it has one.
var importRules = []importRule{
	anything("."), // package main: the CLI wires every role together
	// The master supervises processes: it never runs the app or a loop.
	never("supervisor", "worker", "eventloop", "external"),
	never("worker", "supervisor", "external", "experiment", "bench", "childproc"),
	// The reactor is a library: it knows nothing of who uses it.
	never("eventloop", "worker", "supervisor"),
	// The slow API uses the loop and sockets as libraries (its package doc
	// says why); it shares nothing else with the server it helps measure.
	never("external", "worker", "supervisor"),
	only("control"), // `demo status` renders the master's JSON alone
	// The master's Prometheus endpoint reads the supervisor's table.
	only("metrics", "supervisor", "contract", "sockets", "setting"),
	only("contract"),
	only("sockets", "setting"),
	// An app file is a description the worker runs and tools may read:
	// it runs nothing itself. Its built-in app's modes are the contract's.
	only("appspec", "contract", "setting"),
	// Logging is a library every role's main sets up; it knows no role.
	only("logs", "setting"),
	// How a package names a bad setting; the CLI maps the name to a flag.
	only("setting"),
	// Tools run the binary and read what it prints; no server internals.
	only("experiment", "childproc", "contract"),
	never("bench", serverInternals...),
	never("childproc", serverInternals...),
	// The end-to-end tests run the binary as users and tools do.
	only("e2e", "childproc", "contract", "control", "experiment", "internal/testkit"),
	// What the tests of several packages share; tests alone import it.
	only("internal/testkit"),
}

var serverInternals = []string{"worker", "supervisor", "eventloop", "external"}

// importRule says which packages of ours pkg may depend on.
type importRule struct {
	pkg   string   // relative to the module; "." is package main alone
	allow bool     // pkgs is all it may use (besides its own subtree)
	pkgs  []string // allowed (allow) or forbidden (!allow)
}

func never(pkg string, forbidden ...string) importRule {
	return importRule{pkg: pkg, pkgs: forbidden}
}

func only(pkg string, allowed ...string) importRule {
	return importRule{pkg: pkg, allow: true, pkgs: allowed}
}

func anything(pkg string) importRule { return importRule{pkg: pkg} }

// covers reports whether the rule name pattern covers package p.
func covers(pattern, p string) bool {
	if pattern == "." {
		return p == "."
	}
	return p == pattern || strings.HasPrefix(p, pattern+"/")
}

func (r importRule) String() string {
	switch {
	case r.allow && len(r.pkgs) == 0:
		return r.pkg + " imports nothing of ours"
	case r.allow:
		return r.pkg + " imports at most " + strings.Join(r.pkgs, ", ")
	default:
		return r.pkg + " never imports " + strings.Join(r.pkgs, ", ")
	}
}

// permits reports whether a package under r.pkg may depend on dep.
func (r importRule) permits(dep string) bool {
	matches := slices.ContainsFunc(r.pkgs, func(p string) bool { return covers(p, dep) })
	if r.allow {
		return matches || covers(r.pkg, dep)
	}
	return !matches
}

// ruleFor returns the most specific rule covering p.
func ruleFor(rules []importRule, p string) (importRule, bool) {
	var best importRule
	found := false
	for _, r := range rules {
		if covers(r.pkg, p) && (!found || len(r.pkg) > len(best.pkg)) {
			best, found = r, true
		}
	}
	return best, found
}

// checkImports returns one line per broken rule. graph maps each package of
// ours (relative name) to the packages of ours it imports directly.
func checkImports(rules []importRule, graph map[string][]string) []string {
	var problems []string
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		rule, ok := ruleFor(rules, p)
		if !ok {
			problems = append(problems, fmt.Sprintf("package %s has no row in importRules: say what it may import", p))
			continue
		}
		for dep, path := range reachable(graph, p) {
			if !rule.permits(dep) {
				msg := fmt.Sprintf("forbidden arrow %s → %s", p, dep)
				if len(path) > 2 {
					msg += " (via " + strings.Join(path, " → ") + ")"
				}
				problems = append(problems, msg+": "+rule.String())
			}
		}
	}
	for _, r := range rules {
		if !slices.ContainsFunc(pkgs, func(p string) bool { return covers(r.pkg, p) }) {
			problems = append(problems, fmt.Sprintf("importRules has a row for %s, which is not a package any more", r.pkg))
		}
	}
	slices.Sort(problems)
	return problems
}

// reachable returns every package from depends on, each with a shortest
// import path from it.
func reachable(graph map[string][]string, from string) map[string][]string {
	paths := map[string][]string{from: {from}}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, next := range graph[p] {
			if _, seen := paths[next]; !seen {
				paths[next] = append(slices.Clone(paths[p]), next)
				queue = append(queue, next)
			}
		}
	}
	delete(paths, from)
	return paths
}

// importGraph asks the go command for the direct imports of each of our
// packages.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,Module", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type listed struct {
		ImportPath  string
		Imports     []string
		TestImports []string
		Module      struct{ Path string }
	}
	var pkgs []listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	module := pkgs[0].Module.Path
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	graph := map[string][]string{}
	for _, p := range pkgs {
		name, _ := rel(p.ImportPath)
		graph[name] = []string{}
		imports := p.Imports
		if name == "e2e" {
			imports = append(imports, p.TestImports...)
		}
		for _, imp := range imports {
			if r, ours := rel(imp); ours {
				graph[name] = append(graph[name], r)
			}
		}
	}
	return graph
}

func TestImportRules(t *testing.T) {
	for _, problem := range checkImports(importRules, importGraph(t)) {
		t.Error(problem)
	}
}

// TestImportRulesNameTheForbiddenArrow checks the checker on a made-up
// graph: a forbidden arrow, direct or through another package, is named
// with its path, and a package without a row is reported.
func TestImportRulesNameTheForbiddenArrow(t *testing.T) {
	rules := []importRule{
		anything("."),
		never("supervisor", "eventloop"),
		only("control"),
		only("sockets"),
		never("eventloop", "supervisor"),
	}
	graph := map[string][]string{
		".":                {"supervisor", "control"},
		"supervisor":       {"sockets", "control"},
		"sockets":          {"eventloop/client"},
		"eventloop":        {},
		"eventloop/client": {"eventloop"},
		"control":          {},
		"newpkg":           {},
	}
	got := checkImports(rules, graph)
	want := []string{
		"forbidden arrow sockets → eventloop (via sockets → eventloop/client → eventloop): sockets imports nothing of ours",
		"forbidden arrow sockets → eventloop/client: sockets imports nothing of ours",
		"forbidden arrow supervisor → eventloop (via supervisor → sockets → eventloop/client → eventloop): supervisor never imports eventloop",
		"forbidden arrow supervisor → eventloop/client (via supervisor → sockets → eventloop/client): supervisor never imports eventloop",
		"package newpkg has no row in importRules: say what it may import",
	}
	if !slices.Equal(got, want) {
		t.Errorf("checkImports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestImportGroups holds every file to the import groups of STANDARDS:
// standard library, then third-party, then ours, each group one block.
func TestImportGroups(t *testing.T) {
	module := "demo"
	if out, err := exec.Command("go", "list", "-m").Output(); err == nil {
		module = strings.TrimSpace(string(out))
	}
	group := func(path string) int {
		switch first, _, _ := strings.Cut(path, "/"); {
		case path == module || strings.HasPrefix(path, module+"/"):
			return 2
		case strings.Contains(first, "."):
			return 1
		}
		return 0
	}
	names := [...]string{"standard library", "third-party", "ours"}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		prevGroup, prevLine := -1, 0
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			g, line := group(p), fset.Position(imp.Pos()).Line
			switch blank := line > prevLine+1; {
			case prevGroup < 0:
			case g < prevGroup:
				t.Errorf("%s:%d: import %s (%s) comes after %s imports", path, line, p, names[g], names[prevGroup])
			case g == prevGroup && blank:
				t.Errorf("%s:%d: %s imports split by a blank line", path, line, names[g])
			case g != prevGroup && !blank:
				t.Errorf("%s:%d: no blank line between %s and %s imports", path, line, names[prevGroup], names[g])
			}
			prevGroup, prevLine = g, fset.Position(imp.End()).Line
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
