package experiment

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// BadTargetError says that the --target (or its --healthcheck) cannot be
// used: found before any load is sent, so the command treats it like a bad
// flag.
type BadTargetError struct{ msg string }

func (e *BadTargetError) Error() string { return e.msg }

// targetCheckTimeout bounds the check before the run: resolving, connecting
// and one health check.
const targetCheckTimeout = 10 * time.Second

// parseEndpoint reads a base URL, http://host[:port][/prefix], without
// resolving it.
func parseEndpoint(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return endpoint{}, fmt.Errorf("%q is not a URL", raw)
	case u.Scheme == "https":
		return endpoint{}, fmt.Errorf("%q: https is not supported; give the plain http:// address", raw)
	case u.Scheme != "http" || u.Host == "" || u.Opaque != "":
		return endpoint{}, fmt.Errorf("%q: want http://HOST:PORT", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return endpoint{}, fmt.Errorf("%q: want http://HOST:PORT, without credentials, query or fragment", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return endpoint{
		addr:   net.JoinHostPort(u.Hostname(), port),
		host:   u.Host,
		prefix: strings.TrimRight(u.EscapedPath(), "/"),
	}, nil
}

// CheckTarget makes sure the --target can be measured before any load is
// sent: it resolves the host once (every request then dials the address
// that answered, so name lookups are not measured), connects, and wants a
// 2xx from the health path. Its errors are *BadTargetError, one line each.
func CheckTarget(ctx context.Context, raw, healthPath string) (endpoint, error) {
	ep, err := parseEndpoint(raw)
	if err != nil {
		return endpoint{}, &BadTargetError{"--target " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, targetCheckTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ep.addr)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return endpoint{}, ctx.Err()
		}
		return endpoint{}, &BadTargetError{fmt.Sprintf("--target %s: cannot connect: %v", raw, unwrapOp(err))}
	}
	ep.addr = conn.RemoteAddr().String()
	conn.Close()

	deadline, _ := ctx.Deadline()
	r := ep.get(ctx, healthPath, deadline)
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return endpoint{}, ctx.Err()
	case r.err != nil:
		return endpoint{}, &BadTargetError{fmt.Sprintf("--target %s: GET %s failed before the run (%s): %v", raw, healthPath, r.cause, unwrapOp(r.err))}
	case r.status < 200 || r.status > 299:
		return endpoint{}, &BadTargetError{fmt.Sprintf("--healthcheck %s: %s answered HTTP %d; give a path that answers 200 when the server is healthy", healthPath, raw, r.status)}
	}
	return ep, nil
}

// unwrapOp shortens "dial tcp 127.0.0.1:1: connect: connection refused" to
// its last part: the address is already in the message.
func unwrapOp(err error) string {
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}
