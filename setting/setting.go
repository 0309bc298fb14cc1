// Package setting is how a package says which of its settings is wrong.
//
// Each rule about a setting lives in the package that uses the value (its
// Config.Validate or parser). That package names the setting as its own
// code does — the Config field, "KeepAliveTimeout" — not as a user spells
// it: the command line maps the name to the flag or environment variable
// the user actually typed (`--timeout-keep-alive`, `--keep-alive`,
// DEMO_TIMEOUT_KEEP_ALIVE), so no rule is written twice.
package setting

import (
	"errors"
	"fmt"
)

// Error says what is wrong with one setting.
type Error struct {
	Name string // the setting as the package calls it: a Config field, e.g. "KeepAliveTimeout"
	Err  error  // what is wrong, to follow the name: `must be positive, got 0s`
}

func (e *Error) Error() string { return e.Name + " " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error for the setting name; format and args make Err,
// as fmt.Errorf does (%w included).
func Errorf(name, format string, args ...any) error {
	return &Error{Name: name, Err: fmt.Errorf(format, args...)}
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
