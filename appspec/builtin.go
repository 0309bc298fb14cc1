package appspec

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"

	"demo/contract"
	"demo/setting"
)

// Mode picks what GET / does in the built-in app (--mode). The list is
// the contract's: tools that start `demo serve` pass it on.
type Mode = contract.Mode

// ParseMode accepts one of contract.Modes, as --mode.
func ParseMode(s string) (Mode, error) {
	m, err := contract.ParseMode(s)
	if err != nil {
		return "", setting.Errorf("Mode", "%w", err)
	}
	return m, nil
}

// BuiltinSource is how errors and logs name the built-in app.
const BuiltinSource = "built-in app"

//go:embed builtin.toml
var builtinTemplate string

var builtin = template.Must(template.New("builtin.toml").Parse(builtinTemplate))

// Example is the built-in app as a file, for --mode mode and --calls calls
// (what `demo app example` prints): GET / per mode, plus /mixed,
// /all-async and /threadpool, each making calls sequential external calls.
func Example(mode Mode, calls int) ([]byte, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	if calls < 0 {
		return nil, setting.Errorf("Calls", "must be 0 or more, got %d", calls)
	}
	mixed := func(first bool) string {
		return routeBody(Async, calls, true, "requests.get(...): holds the loop in an async def", first)
	}
	allAsync := func(first bool) string {
		return routeBody(Async, calls, false, "await httpx.AsyncClient().get(...)", first)
	}
	pool := func(first bool) string {
		return routeBody(Sync, calls, true, "requests.get(...) on a pool thread", first)
	}
	data := struct {
		Mode                                         Mode
		RootStory, Root, Mixed, AllAsync, Threadpool string
	}{Mode: mode, Mixed: mixed(false), AllAsync: allAsync(false), Threadpool: pool(false)}
	switch mode {
	case contract.Mixed:
		data.RootStory, data.Root = "like /mixed, an async def whose calls hold the loop.", mixed(true)
	case contract.Async:
		data.RootStory, data.Root = "like /all-async, an async def awaiting its calls.", allAsync(true)
	case contract.Threadpool:
		data.RootStory, data.Root = "like /threadpool, a plain def on the thread pool.", pool(true)
	}
	var b bytes.Buffer
	if err := builtin.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("built-in app: %w", err)
	}
	return b.Bytes(), nil
}

// routeBody is a route's def and steps: calls external calls, the first
// with comment, saying what it is in Python. The first route of the file
// also explains def, as the format's documentation does.
func routeBody(def Def, calls int, blocking bool, comment string, first bool) string {
	var b strings.Builder
	defLine, stepsLine := fmt.Sprintf("def = %q", def), "steps = ["
	if calls == 0 {
		stepsLine = "steps = []"
	}
	if first {
		defLine = fmt.Sprintf("%-39s # \"async\": `async def`, runs on the event loop", defLine)
		stepsLine = fmt.Sprintf("%-39s # \"sync\": plain `def`, runs whole on the thread pool", stepsLine)
	}
	b.WriteString(defLine + "\n" + stepsLine + "\n")
	if calls == 0 {
		return b.String()
	}
	step := `{ call = "external" },`
	if blocking {
		step = `{ call = "external", blocking = true },`
	}
	for i := range calls {
		if i == 0 {
			fmt.Fprintf(&b, "  %-40s # %s\n", step, comment)
		} else {
			fmt.Fprintf(&b, "  %s\n", step)
		}
	}
	b.WriteString("]\n")
	return b.String()
}

// Builtin is the app `demo serve` runs without --app: Example, parsed.
func Builtin(mode Mode, calls int) (*App, error) {
	doc, err := Example(mode, calls)
	if err != nil {
		return nil, err
	}
	return Parse(BuiltinSource, doc)
}
