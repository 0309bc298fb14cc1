// Package appspec is an app described in a file: the routes `demo serve`
// answers, each a FastAPI endpoint in miniature — `async def` (run on the
// event loop) or plain `def` (run whole on the thread pool) — made of steps:
// an external call, a sleep, CPU work, log lines, each blocking or awaited.
//
// It parses and checks such a file (TOML, errors at file:line:col), holds
// the built-in app as one (the article's endpoints, per --mode), and prints
// the same app as a FastAPI module for real Uvicorn. It knows nothing of
// how a worker runs the steps; package worker does that.
package appspec

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// DefaultExternal is the slow external API's URL when neither the file nor
// --external names one: the article's EXTERNAL_API_ENDPOINT.
const DefaultExternal = "http://localhost:8888"

// DefaultCallTimeout is a call's timeout when neither the step nor
// --external-timeout sets one: the article's timeout=2000.
const DefaultCallTimeout = 2000 * time.Second

// App is a parsed, checked app file.
type App struct {
	Source   string  // the file's name as given, or "built-in app"
	External string  // the file's `external`, "" if it has none
	Routes   []Route // in file order; /healthcheck is never among them
}

// Def says what runs a route, as FastAPI decides it from the endpoint's
// definition.
type Def string

const (
	// Async is `async def`: the route runs on the event loop, and only its
	// awaited steps let the loop serve others meanwhile.
	Async Def = "async"
	// Sync is a plain `def`: the route runs whole on a thread-pool thread
	// (Starlette's run_in_threadpool), so the loop stays free.
	Sync Def = "sync"
)

// Route is one endpoint.
type Route struct {
	Path   string // exact match, e.g. "/report"
	Method string // GET (which also answers HEAD), POST, PUT, PATCH or DELETE
	Def    Def
	Steps  []Step
	Where  string // "routes./report", how errors and labels name it
}

// HoldsLoop reports whether a request to r holds its worker's event loop
// at some point: an async route with a blocking call or sleep, or CPU work.
// (Log steps hold it too, briefly: that is the logger's cost, not counted.)
func (r *Route) HoldsLoop() bool {
	if r.Def != Async {
		return false
	}
	for _, s := range r.Steps {
		if s.HoldsLoop() {
			return true
		}
	}
	return false
}

// Kind is what a step does.
type Kind int

const (
	// Call is a GET to the external API (or to a URL).
	Call Kind = iota + 1
	// Sleep waits: time.sleep when blocking, else await asyncio.sleep.
	Sleep
	// CPU is busy computation on whatever runs the step.
	CPU
	// Log writes lines through the worker's logger.
	Log
)

func (k Kind) String() string {
	switch k {
	case Call:
		return "call"
	case Sleep:
		return "sleep"
	case CPU:
		return "cpu"
	case Log:
		return "log"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Step is one thing a route does, in order.
type Step struct {
	Kind Kind
	// Blocking, for a call or a sleep: requests.get / time.sleep, which
	// hold whatever runs them; otherwise awaited. Always true for cpu and
	// log, which cannot be awaited. In a sync route every step blocks.
	Blocking bool
	URL      string        // call: "" for the app's external API, else an http:// URL
	Timeout  time.Duration // call: 0 means --external-timeout
	Duration time.Duration // sleep, cpu
	Lines    int           // log
	// Label names the step in the blocked-loop detector's lines, e.g.
	// "routes./report steps[3] sleep blocking" (steps count from 1).
	Label string
}

// HoldsLoop reports whether the step, run on the event loop, holds it.
func (s *Step) HoldsLoop() bool { return s.Blocking && s.Kind != Log }

// Summary is the one line `demo app check` prints for a valid file.
func (a *App) Summary() string {
	s := fmt.Sprintf("%s: OK, %d route", a.Source, len(a.Routes))
	if len(a.Routes) != 1 {
		s += "s"
	}
	for i, r := range a.Routes {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		def := "async def"
		if r.Def == Sync {
			def = "def, thread pool"
		}
		s += fmt.Sprintf("%s%s %s (%s, %d step", sep, r.Method, r.Path, def, len(r.Steps))
		if len(r.Steps) != 1 {
			s += "s"
		}
		if r.HoldsLoop() {
			s += ", holds the event loop"
		}
		s += ")"
	}
	return s
}

// CheckURL accepts what the worker's clients can call: http://host[:port][/path].
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want http://host[:port][/path]", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", raw, p)
		}
	}
	return nil
}
