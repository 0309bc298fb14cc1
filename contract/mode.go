package contract

import (
	"fmt"
	"strings"
)

// Mode picks what GET / does in the built-in app: `demo serve --mode` and
// `demo worker --mode` take it, and `demo experiment` passes it on.
type Mode string

const (
	// Mixed is `async def` calling `requests`: a blocking call on the loop.
	Mixed Mode = "mixed"
	// Async is `async def` awaiting httpx.AsyncClient: the loop keeps serving.
	Async Mode = "async"
	// Threadpool is a plain `def` endpoint that Starlette runs in a thread pool.
	Threadpool Mode = "threadpool"
)

// Modes lists every mode, in the order help text shows them.
var Modes = []Mode{Mixed, Async, Threadpool}

// JoinModes is Modes as text: JoinModes(", ") is "mixed, async, threadpool".
func JoinModes(sep string) string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return strings.Join(names, sep)
}

// ParseMode accepts one of Modes; its error says what is wrong with s,
// for the caller to name the setting.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%q: want one of %s", s, JoinModes(", "))
}
