package appspec

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"demo/contract"
	"demo/setting"
)

// TestParseErrorsNameFileLineAndColumn: every way a file can be wrong ends
// in one line naming the file, the line and column of the culprit, and
// what is wrong with it, worded for this format.
func TestParseErrorsNameFileLineAndColumn(t *testing.T) {
	const head = "[routes.\"/x\"]\ndef = \"async\"\n"
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty", "", `app.toml:1:1: no routes: describe at least one, e.g. [routes."/"] with def and steps (demo app example prints a whole file)`},
		{"syntax", "[routes.\"/x\"]\ndef = \"async\n", `app.toml:2:13: basic strings cannot have new lines`},
		{"duplicate key", head + "def = \"sync\"\n", `app.toml:3:1: key def is already defined`},
		{"unknown top key", "extrnal = \"http://x\"\n", `app.toml:1:1: unknown key "extrnal" (want external or routes)`},
		{"unknown route key", head + "stpes = []\n", `app.toml:3:1: unknown key "stpes" (a route takes def, method and steps): routes./x`},
		{"unknown step key", head + "steps = [{ call = \"external\" }, { call = \"external\", blockin = true }]\n",
			`app.toml:3:54: unknown key "blockin" (a step takes one of call, sleep, cpu or log, and blocking or timeout): routes./x steps[2]`},
		{"unknown key in an array of tables", "[routes.\"/x\"]\ndef = \"async\"\n[[routes.\"/x\".steps]]\nlog = 1\n[[routes.\"/x\".steps]]\nlog = 2\nwhat = 1\n",
			`app.toml:7:1: unknown key "what" (a step takes one of call, sleep, cpu or log, and blocking or timeout): routes./x steps[2]`},
		{"external type", "external = 8888\n", `app.toml:1:12: external must be an http:// URL such as "http://localhost:8888", got integer`},
		{"external URL", "external = \"localhost:8888\"\n" + head, `app.toml:1:12: external must be an http:// URL: "localhost:8888": want http://host[:port][/path]`},
		{"routes type", "routes = 3\n", `app.toml:1:10: routes must be a table of routes such as [routes."/"], got integer`},
		{"route type", "[routes]\n\"/x\" = 3\n", `app.toml:2:8: a route must be a table with def and steps, got integer: routes./x`},
		{"steps type", head + "steps = \"call\"\n", `app.toml:3:9: steps must be an array of steps such as [{ call = "external" }], got string: routes./x`},
		{"step type", head + "steps = [\"call\"]\n", `app.toml:3:10: a step must be a table such as { call = "external" }, got string: routes./x steps[1]`},
		{"log type", head + "steps = [\n  { log = 3 },\n  { log = 2.5 },\n]\n", `app.toml:5:11: log must be a whole number of lines, got float: routes./x steps[2]`},
		{"blocking type", head + "steps = [{ sleep = \"1s\", blocking = \"yes\" }]\n", `app.toml:3:37: blocking must be true or false, got string: routes./x steps[1]`},
		{"duration type", head + "steps = [{ cpu = 30 }]\n", `app.toml:3:18: cpu must be a duration such as "200ms" or "1.5s", got integer: routes./x steps[1]`},
		{"healthcheck", "[routes.\"/healthcheck\"]\ndef = \"async\"\n", `app.toml:1:9: /healthcheck is built in and cannot be overridden: routes./healthcheck`},
		{"relative path", "[routes.\"x\"]\ndef = \"async\"\n", `app.toml:1:9: a route's path must start with /, got "x": routes.x`},
		{"query in path", "[routes.\"/x?y\"]\ndef = \"async\"\n", `app.toml:1:9: a route's path must be a plain URL path (no spaces, ?, # or \), got "/x?y": routes./x?y`},
		{"no def", "[routes.\"/x\"]\nsteps = []\n", `app.toml:1:9: def is missing: routes./x (def = "async" runs on the event loop, def = "sync" on the thread pool)`},
		{"bad def", "[routes.\"/x\"]\ndef = \"asinc\"\n", `app.toml:2:7: def must be "async" or "sync", got "asinc": routes./x`},
		{"bad method", head + "method = \"FETCH\"\n", `app.toml:3:10: method must be one of GET, POST, PUT, PATCH, DELETE, got "FETCH": routes./x`},
		{"await in def", "[routes.\"/x\"]\ndef = \"sync\"\nsteps = [{ call = \"external\", blocking = true }, { call = \"external\" }]\n",
			`app.toml:3:50: 'await' outside async function: routes./x steps[2] (def = "sync" runs on a thread pool thread, where call must be blocking = true; or make the route def = "async")`},
		{"await sleep in def", "[routes.\"/x\"]\ndef = \"sync\"\n[[routes.\"/x\".steps]]\nsleep = \"1s\"\n",
			`app.toml:3:15: 'await' outside async function: routes./x steps[1] (def = "sync" runs on a thread pool thread, where sleep must be blocking = true; or make the route def = "async")`},
		{"blocking cpu", head + "steps = [{ cpu = \"30ms\", blocking = true }]\n",
			`app.toml:3:26: blocking does not apply to cpu: a cpu step always runs on whatever runs the route (the event loop in an async def, a pool thread in a def); remove it: routes./x steps[1]`},
		{"blocking log", head + "steps = [{ log = 1, blocking = false }]\n",
			`app.toml:3:21: blocking does not apply to log: a log step always runs on whatever runs the route (the event loop in an async def, a pool thread in a def); remove it: routes./x steps[1]`},
		{"two kinds", head + "steps = [{ cpu = \"30ms\", log = 2 }]\n", `app.toml:3:26: a step does one thing, this one says both cpu and log (split it in two): routes./x steps[1]`},
		{"no kind", head + "steps = [{ blocking = true }]\n", `app.toml:3:10: a step needs one of call, sleep, cpu or log, e.g. { call = "external" }: routes./x steps[1]`},
		{"https", head + "steps = [{ call = \"https://api\" }]\n", `app.toml:3:19: call must be "external" or an http:// URL: "https://api": want http://host[:port][/path]: routes./x steps[1]`},
		{"timeout on sleep", head + "steps = [{ sleep = \"1s\", timeout = \"1s\" }]\n", `app.toml:3:26: timeout is for call steps, not sleep: routes./x steps[1]`},
		{"zero timeout", head + "steps = [{ call = \"external\", timeout = \"0s\" }]\n", `app.toml:3:41: timeout "0s": must be more than 0: routes./x steps[1]`},
		{"bad duration", head + "steps = [{ sleep = \"2 seconds\" }]\n", `app.toml:3:20: sleep "2 seconds": want a duration such as "200ms" or "1.5s": routes./x steps[1]`},
		{"negative duration", head + "steps = [{ cpu = \"-1s\" }]\n", `app.toml:3:18: cpu "-1s": must not be negative: routes./x steps[1]`},
		{"too long", head + "steps = [{ sleep = \"2h\" }]\n", `app.toml:3:20: sleep "2h": must be at most 1h0m0s: routes./x steps[1]`},
		{"no lines", "routes.\"/x\".def = \"async\"\nroutes.\"/x\".steps = [{ log = 0 }]\n", `app.toml:2:30: log must be 1 to 10000 lines, got 0: routes./x steps[1]`},
		{"inline routes, second bad", "routes = { \"/a\" = { def = \"async\" }, \"/b\" = { def = \"x\" } }\n", `app.toml:1:53: def must be "async" or "sync", got "x": routes./b`},
		{"first problem in file order", "[routes.\"/b\"]\ndef = \"x\"\n[routes.\"/a\"]\ndef = \"y\"\n", `app.toml:2:7: def must be "async" or "sync", got "x": routes./b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("app.toml", []byte(tc.doc))
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %v (%T), want an *Error", err, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error\n got %s\nwant %s", got, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestParseTheIssuesSample(t *testing.T) {
	app, err := Parse("app.toml", []byte(`
external = "http://localhost:8888"      # optional; --external overrides it

[routes."/"]
def = "async"
steps = [
  { call = "external", blocking = true },
  { call = "external", blocking = true },
]

[routes."/all-async"]
def = "async"
steps = [{ call = "external" }, { call = "external" }]

[routes."/report"]
def = "async"
steps = [{ call = "external" }, { cpu = "30ms" }, { sleep = "200ms", blocking = true }, { log = 3 }]

[routes."/pool"]
def = "sync"
method = "post"
steps = [{ call = "http://127.0.0.1:9/x", blocking = true, timeout = "1.5s" }, { sleep = "1s", blocking = true }]
`))
	if err != nil {
		t.Fatal(err)
	}
	if app.External != "http://localhost:8888" {
		t.Errorf("external %q", app.External)
	}
	var paths []string
	for _, r := range app.Routes {
		paths = append(paths, r.Path)
	}
	if want := []string{"/", "/all-async", "/report", "/pool"}; !slices.Equal(paths, want) {
		t.Fatalf("routes %v, want %v in file order", paths, want)
	}
	report := app.Routes[2]
	want := []Step{
		{Kind: Call, Label: "routes./report steps[1] call"},
		{Kind: CPU, Blocking: true, Duration: 30 * time.Millisecond, Label: "routes./report steps[2] cpu"},
		{Kind: Sleep, Blocking: true, Duration: 200 * time.Millisecond, Label: "routes./report steps[3] sleep blocking"},
		{Kind: Log, Blocking: true, Lines: 3, Label: "routes./report steps[4] log"},
	}
	if report.Def != Async || report.Method != "GET" || !slices.Equal(report.Steps, want) {
		t.Errorf("/report: %+v\nwant steps %+v", report, want)
	}
	pool := app.Routes[3]
	if pool.Def != Sync || pool.Method != "POST" || pool.Steps[0].URL != "http://127.0.0.1:9/x" || pool.Steps[0].Timeout != 1500*time.Millisecond || !pool.Steps[0].Blocking {
		t.Errorf("/pool: %+v", pool)
	}
	if !app.Routes[0].HoldsLoop() || app.Routes[1].HoldsLoop() || !report.HoldsLoop() || pool.HoldsLoop() {
		t.Errorf("HoldsLoop: / %v, /all-async %v, /report %v, /pool %v, want true false true false",
			app.Routes[0].HoldsLoop(), app.Routes[1].HoldsLoop(), report.HoldsLoop(), pool.HoldsLoop())
	}
	wantSummary := "app.toml: OK, 4 routes: GET / (async def, 2 steps, holds the event loop), GET /all-async (async def, 2 steps), " +
		"GET /report (async def, 4 steps, holds the event loop), POST /pool (def, thread pool, 2 steps)"
	if got := app.Summary(); got != wantSummary {
		t.Errorf("summary\n got %s\nwant %s", got, wantSummary)
	}
}

// TestBuiltinIsTheExampleFile: the built-in app is the file `demo app
// example` prints, for every mode and number of calls: GET / follows the
// mode, the other three paths are fixed.
func TestBuiltinIsTheExampleFile(t *testing.T) {
	shape := func(r Route) string {
		s := string(r.Def)
		for _, st := range r.Steps {
			s += " " + strings.TrimPrefix(st.Label, r.Where+" ")
		}
		return s
	}
	for _, mode := range contract.Modes {
		for _, calls := range []int{0, 1, 2, 3} {
			doc, err := Example(mode, calls)
			if err != nil {
				t.Fatal(err)
			}
			app, err := Builtin(mode, calls)
			if err != nil {
				t.Fatalf("%s×%d: %v", mode, calls, err)
			}
			if app.Source != BuiltinSource || app.External != DefaultExternal || len(app.Routes) != 4 {
				t.Fatalf("%s×%d: %+v", mode, calls, app)
			}
			fromFile, err := Parse(BuiltinSource, doc)
			if err != nil || !slices.EqualFunc(fromFile.Routes, app.Routes, func(a, b Route) bool { return shape(a) == shape(b) }) {
				t.Errorf("%s×%d: the example file parses to %+v (%v), want the built-in app", mode, calls, fromFile, err)
			}
			byPath := map[string]string{}
			for _, r := range app.Routes {
				byPath[r.Path] = shape(r)
			}
			calling := func(def, step string) string {
				s := def
				for i := range calls {
					s += " steps[" + string(rune('1'+i)) + "] " + step
				}
				return s
			}
			mixed, async, pool := calling("async", "call blocking"), calling("async", "call"), calling("sync", "call blocking")
			root := map[Mode]string{contract.Mixed: mixed, contract.Async: async, contract.Threadpool: pool}[mode]
			for path, want := range map[string]string{"/": root, "/mixed": mixed, "/all-async": async, "/threadpool": pool} {
				if byPath[path] != want {
					t.Errorf("%s×%d: %s is %q, want %q", mode, calls, path, byPath[path], want)
				}
			}
		}
	}
	if e, ok := setting.As(exampleErr("fast", 2)); !ok || e.Name != "Mode" {
		t.Errorf("Example with a bad mode: %v", exampleErr("fast", 2))
	}
	if e, ok := setting.As(exampleErr(contract.Mixed, -1)); !ok || e.Name != "Calls" {
		t.Errorf("Example with -1 calls: %v", exampleErr(contract.Mixed, -1))
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none.toml")); err == nil || err.Error() != filepath.Join(dir, "none.toml")+": cannot read: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "app.toml")
	if err := os.WriteFile(path, []byte("[routes.\"/x\"]\ndef = \"sync\"\nsteps = [{ sleep = \"1s\" }]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":3:10: 'await' outside async function: routes./x steps[1]") {
		t.Errorf("bad file: %v", err)
	}
	big := make([]byte, maxFileSize+1)
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
}

func TestPyNames(t *testing.T) {
	taken := map[string]bool{"healthcheck": true}
	for _, tc := range [][2]string{
		{"/", "root"}, {"/all-async", "all_async"}, {"/all_async", "all_async_2"}, {"/v1/Report.json", "v1_report_json"},
		{"/2fa", "route_2fa"}, {"/import", "import_2"}, {"/healthcheck/", "healthcheck_2"}, {"/-", "root_2"},
	} {
		if got := pyName(tc[0], taken); got != tc[1] {
			t.Errorf("pyName(%q) = %q, want %q", tc[0], got, tc[1])
		}
	}
	if got := pyString("a\"b\\c\té"); got != `"a\"b\\c\u0009\u00e9"` {
		t.Errorf("pyString: %s", got)
	}
}

// TestFastAPIModule: the module holds, per route, the Python each step
// means, and compiles when a python3 is around.
func TestFastAPIModule(t *testing.T) {
	app, err := Parse("report.toml", []byte(`
[routes."/report"]
def = "async"
steps = [{ call = "external" }, { cpu = "30ms" }, { sleep = "200ms", blocking = true }, { log = 3 }, { call = "http://127.0.0.1:9/x", blocking = true, timeout = "1.5s" }, { sleep = "0.5s" }]

[routes."/pool"]
def = "sync"
method = "PUT"
steps = [{ call = "external", blocking = true }]
`))
	if err != nil {
		t.Fatal(err)
	}
	mod := string(FastAPI(app))
	for _, want := range []string{
		`EXTERNAL_API_ENDPOINT = os.environ.get("EXTERNAL_API", "http://localhost:8888")`,
		"@app.api_route(\"/healthcheck\", methods=[\"GET\", \"HEAD\"])\nasync def healthcheck():",
		"@app.api_route(\"/report\", methods=[\"GET\", \"HEAD\"])\nasync def report(request: Request, response: Response):",
		"    async with httpx.AsyncClient(verify=False) as client:  # http:// only: no certificates to load\n        answer = await client.get(EXTERNAL_API_ENDPOINT, timeout=2000)\n    log.info(f\"{request_id} 1: {answer}\")",
		"    # steps[2] cpu: holds the event loop, nothing else in this worker runs meanwhile\n    cpu(0.03)\n",
		"    # steps[3] sleep blocking: holds the event loop, nothing else in this worker runs meanwhile\n    time.sleep(0.2)\n",
		"    for line in range(1, 4):\n        log.info(f\"{request_id}: log line {line} of 3\")\n",
		"    answer = requests.get(\"http://127.0.0.1:9/x\", timeout=1.5)\n    log.info(f\"{request_id} 2: {answer}\")\n",
		"    await asyncio.sleep(0.5)\n",
		"@app.put(\"/pool\")\ndef pool(request: Request, response: Response):",
		"    log.info(f\"{request_id}: finished!\")\n    return {\"message\": \"hello world\"}\n",
	} {
		if !strings.Contains(mod, want) {
			t.Errorf("module lacks\n%s", want)
		}
	}
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if _, err := exec.LookPath(py); err != nil {
			continue
		}
		cmd := exec.Command(py, "-c", "import ast, sys; ast.parse(sys.stdin.read())")
		cmd.Stdin = strings.NewReader(mod)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s cannot parse the module: %v\n%s\n%s", py, err, out, mod)
		}
		return
	}
	t.Log("no python3: the module's syntax is not checked")
}

func exampleErr(mode Mode, calls int) error {
	_, err := Example(mode, calls)
	return err
}
