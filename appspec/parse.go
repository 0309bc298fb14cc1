package appspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Error is what is wrong with an app file, and where: "app.toml:7:5: 'await'
// outside async function: routes./x steps[1]". Line and Col are 1-based;
// both are 0 when the file could not be read at all.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// maxFileSize bounds an app file: a few routes take a few KiB.
const maxFileSize = 1 << 20

// Load reads, parses and checks the app file at path; errors are *Error.
func Load(path string) (*App, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: readError(err)}
	}
	defer f.Close()
	doc, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: readError(err)}
	}
	if len(doc) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d KiB: not an app file", maxFileSize>>10)}
	}
	return Parse(path, doc)
}

func readError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "cannot read: " + err.Error()
}

// The file as go-toml decodes it: pointers tell "absent" from "zero".
type rawApp struct {
	External *string             `toml:"external"`
	Routes   map[string]rawRoute `toml:"routes"`
}

type rawRoute struct {
	Def    *string   `toml:"def"`
	Method *string   `toml:"method"`
	Steps  []rawStep `toml:"steps"`
}

type rawStep struct {
	Call     *string `toml:"call"`
	Sleep    *string `toml:"sleep"`
	CPU      *string `toml:"cpu"`
	Log      *int64  `toml:"log"`
	Blocking *bool   `toml:"blocking"`
	Timeout  *string `toml:"timeout"`
}

// Parse parses and checks an app file's contents; name is how errors and
// the summary call the file. Errors are *Error.
func Parse(name string, doc []byte) (*App, error) {
	var raw rawApp
	err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(&raw)
	if err != nil {
		return nil, decodeError(name, doc, err)
	}
	return check(name, newIndex(doc), &raw)
}

// decodeError turns go-toml's error into one line at file:line:col, worded
// for this format: which key, which route, which step.
func decodeError(name string, doc []byte, err error) *Error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		// The first unknown key in the file.
		first := slices.MinFunc(strict.Errors, func(a, b toml.DecodeError) int {
			al, ac := a.Position()
			bl, bc := b.Position()
			if al != bl {
				return al - bl
			}
			return ac - bc
		})
		line, col := first.Position()
		key := first.Key()
		path := newIndex(doc).pathAt(line, col)
		if path == nil {
			path = []string(key)
		}
		bad := ""
		if len(key) > 0 {
			bad = key[len(key)-1]
		}
		loc, _ := describe(path[:max(len(path)-1, 0)])
		return &Error{name, line, col, withWhere(fmt.Sprintf("unknown key %q (%s)", bad, knownKeys(path)), loc)}
	}
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return &Error{File: name, Line: 1, Col: 1, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, col := de.Position()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	if m := typeMismatch.FindStringSubmatch(msg); m != nil {
		path := newIndex(doc).pathAt(line, col)
		if path == nil {
			path = []string(de.Key())
		}
		loc, field := describe(path)
		msg = withWhere(fmt.Sprintf("%s must be %s, got %s", nameOf(path, field), wantOf(path, field), m[1]), loc)
	}
	return &Error{name, line, col, msg}
}

// typeMismatch matches go-toml's "cannot decode TOML integer into ...".
var typeMismatch = regexp.MustCompile(`^cannot decode TOML (.+?) into `)

// describe names a path the way errors and labels do: where
// ("routes./x steps[2]") and which field of it ("sleep", or "").
func describe(path []string) (where, field string) {
	switch {
	case len(path) == 0:
		return "", ""
	case path[0] != "routes" || len(path) == 1:
		return "", strings.Join(path, ".")
	}
	where = "routes." + path[1]
	rest := path[2:]
	if len(rest) >= 2 && rest[0] == "steps" {
		if i, ok := elemIndex(rest[1]); ok {
			where += fmt.Sprintf(" steps[%d]", i+1)
			rest = rest[2:]
		}
	}
	return where, strings.Join(rest, ".")
}

func withWhere(msg, where string) string {
	if where == "" {
		return msg
	}
	return msg + ": " + where
}

// nameOf is what a type error calls the value at path.
func nameOf(path []string, field string) string {
	switch {
	case field != "":
		return field
	case len(path) == 2:
		return "a route"
	}
	return "a step"
}

// wantOf says what the value at path must be.
func wantOf(path []string, field string) string {
	const duration = `a duration such as "200ms" or "1.5s"`
	switch field {
	case "external":
		return `an http:// URL such as "http://localhost:8888"`
	case "routes":
		return `a table of routes such as [routes."/"]`
	case "def":
		return `"async" or "sync"`
	case "method":
		return `a string such as "GET"`
	case "steps":
		return `an array of steps such as [{ call = "external" }]`
	case "call":
		return `"external" or an http:// URL`
	case "sleep", "cpu", "timeout":
		return duration
	case "log":
		return "a whole number of lines"
	case "blocking":
		return "true or false"
	case "":
		if len(path) == 2 {
			return `a table with def and steps`
		}
		return `a table such as { call = "external" }`
	}
	return "something else"
}

// knownKeys lists the keys allowed where path's last key is.
func knownKeys(path []string) string {
	switch {
	case len(path) <= 1:
		return "want external or routes"
	case len(path) == 3:
		return "a route takes def, method and steps"
	}
	return "a step takes one of call, sleep, cpu or log, and blocking or timeout"
}
