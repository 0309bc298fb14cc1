package appspec

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Bounds on what a step may ask for: generous, but a typo such as
// log = 1000000000 should not take a worker down.
const (
	maxLines    = 10000
	maxDuration = time.Hour
)

// methods a route may take; GET routes answer HEAD too, as Starlette's do.
var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

// Healthcheck is the path every worker answers itself; a file cannot
// define it.
const Healthcheck = "/healthcheck"

// checker turns the decoded file into an App, stopping at the first
// problem in file order.
type checker struct {
	name string
	ix   *index
}

func (c *checker) fail(at place, format string, args ...any) error {
	return &Error{c.name, at.line, at.col, fmt.Sprintf(format, args...)}
}

func check(name string, ix *index, raw *rawApp) (*App, error) {
	c := &checker{name: name, ix: ix}
	app := &App{Source: name}
	if raw.External != nil {
		if err := CheckURL(*raw.External); err != nil {
			return nil, c.fail(ix.valueAt("external"), "external must be an http:// URL: %v", err)
		}
		app.External = *raw.External
	}
	if len(raw.Routes) == 0 {
		return nil, c.fail(place{1, 1}, `no routes: describe at least one, e.g. [routes."/"] with def and steps (demo app example prints a whole file)`)
	}
	paths := make([]string, 0, len(raw.Routes))
	for p := range raw.Routes {
		paths = append(paths, p)
	}
	// File order, so that the first problem reported is the first in the file.
	slices.SortFunc(paths, func(a, b string) int {
		pa, pb := ix.keyAt("routes", a), ix.keyAt("routes", b)
		if pa.line != pb.line {
			return pa.line - pb.line
		}
		return pa.col - pb.col
	})
	for _, p := range paths {
		r, err := c.route(p, raw.Routes[p])
		if err != nil {
			return nil, err
		}
		app.Routes = append(app.Routes, r)
	}
	return app, nil
}

func (c *checker) route(path string, raw rawRoute) (Route, error) {
	r := Route{Path: path, Method: "GET", Where: "routes." + path}
	at := c.ix.keyAt("routes", path)
	switch {
	case path == Healthcheck:
		return r, c.fail(at, "%s is built in and cannot be overridden: %s", Healthcheck, r.Where)
	case !strings.HasPrefix(path, "/"):
		return r, c.fail(at, "a route's path must start with /, got %q: %s", path, r.Where)
	case strings.ContainsFunc(path, badPathRune):
		return r, c.fail(at, "a route's path must be a plain URL path (no spaces, ?, # or \\), got %q: %s", path, r.Where)
	}
	switch {
	case raw.Def == nil:
		return r, c.fail(at, `def is missing: %s (def = "async" runs on the event loop, def = "sync" on the thread pool)`, r.Where)
	case *raw.Def != string(Async) && *raw.Def != string(Sync):
		return r, c.fail(c.ix.valueAt("routes", path, "def"), `def must be "async" or "sync", got %q: %s`, *raw.Def, r.Where)
	}
	r.Def = Def(*raw.Def)
	if raw.Method != nil {
		m := strings.ToUpper(*raw.Method)
		if !slices.Contains(methods, m) {
			return r, c.fail(c.ix.valueAt("routes", path, "method"), "method must be one of %s, got %q: %s", strings.Join(methods, ", "), *raw.Method, r.Where)
		}
		r.Method = m
	}
	for i, rs := range raw.Steps {
		s, err := c.step(&r, i, rs)
		if err != nil {
			return r, err
		}
		r.Steps = append(r.Steps, s)
	}
	return r, nil
}

func badPathRune(r rune) bool {
	return r <= ' ' || r == '?' || r == '#' || r == '\\' || r == '"' || r >= 0x7f
}

func (c *checker) step(r *Route, i int, raw rawStep) (Step, error) {
	el := elem(i)
	where := fmt.Sprintf("%s steps[%d]", r.Where, i+1)
	at := c.ix.keyAt("routes", r.Path, "steps", el)
	valueAt := func(key string) place { return c.ix.valueAt("routes", r.Path, "steps", el, key) }
	keyAt := func(key string) place { return c.ix.keyAt("routes", r.Path, "steps", el, key) }

	var s Step
	var kinds []string
	for _, k := range []struct {
		kind Kind
		set  bool
	}{{Call, raw.Call != nil}, {Sleep, raw.Sleep != nil}, {CPU, raw.CPU != nil}, {Log, raw.Log != nil}} {
		if !k.set {
			continue
		}
		kinds = append(kinds, k.kind.String())
		if len(kinds) == 2 {
			return s, c.fail(keyAt(k.kind.String()), "a step does one thing, this one says both %s and %s (split it in two): %s", kinds[0], kinds[1], where)
		}
		s.Kind = k.kind
	}
	if s.Kind == 0 {
		return s, c.fail(at, `a step needs one of call, sleep, cpu or log, e.g. { call = "external" }: %s`, where)
	}
	name := s.Kind.String()
	if raw.Timeout != nil && s.Kind != Call {
		return s, c.fail(keyAt("timeout"), "timeout is for call steps, not %s: %s", name, where)
	}
	switch s.Kind {
	case Call, Sleep:
		s.Blocking = raw.Blocking != nil && *raw.Blocking
		if !s.Blocking && r.Def == Sync {
			// What Python says of an await in a plain def.
			return s, c.fail(at, `'await' outside async function: %s (def = "sync" runs on a thread pool thread, where %s must be blocking = true; or make the route def = "async")`, where, name)
		}
	case CPU, Log:
		if raw.Blocking != nil {
			return s, c.fail(keyAt("blocking"), "blocking does not apply to %s: a %s step always runs on whatever runs the route (the event loop in an async def, a pool thread in a def); remove it: %s", name, name, where)
		}
		s.Blocking = true
	}
	var err error
	switch s.Kind {
	case Call:
		if *raw.Call != "external" {
			if err := CheckURL(*raw.Call); err != nil {
				return s, c.fail(valueAt("call"), `call must be "external" or an http:// URL: %v: %s`, err, where)
			}
			s.URL = *raw.Call
		}
		if raw.Timeout != nil {
			if s.Timeout, err = duration(*raw.Timeout); err != nil || s.Timeout == 0 {
				if err == nil {
					err = fmt.Errorf("must be more than 0")
				}
				return s, c.fail(valueAt("timeout"), "timeout %q: %v: %s", *raw.Timeout, err, where)
			}
		}
	case Sleep:
		if s.Duration, err = duration(*raw.Sleep); err != nil {
			return s, c.fail(valueAt("sleep"), "sleep %q: %v: %s", *raw.Sleep, err, where)
		}
	case CPU:
		if s.Duration, err = duration(*raw.CPU); err != nil {
			return s, c.fail(valueAt("cpu"), "cpu %q: %v: %s", *raw.CPU, err, where)
		}
	case Log:
		if *raw.Log < 1 || *raw.Log > maxLines {
			return s, c.fail(valueAt("log"), "log must be 1 to %d lines, got %d: %s", maxLines, *raw.Log, where)
		}
		s.Lines = int(*raw.Log)
	}
	s.Label = where + " " + name
	if s.Blocking && (s.Kind == Call || s.Kind == Sleep) {
		s.Label += " blocking"
	}
	return s, nil
}

// duration parses a step's duration: Go's syntax ("200ms", "1.5s"),
// 0 to an hour.
func duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf(`want a duration such as "200ms" or "1.5s"`)
	case d < 0:
		return 0, fmt.Errorf("must not be negative")
	case d > maxDuration:
		return 0, fmt.Errorf("must be at most %v", maxDuration)
	}
	return d, nil
}
