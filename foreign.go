package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"demo/worker"
)

// Uvicorn's and Gunicorn's command lines, and what `demo serve` does with
// each of their options, so that a command line pasted from either works
// or fails with a reason. The README's table of spellings is made from
// this one (TestREADMEListsEverySpelling keeps them equal).

// spellingKind is what demo does with an option of Uvicorn or Gunicorn.
type spellingKind int

const (
	same        spellingKind = iota // demo has the same flag, meaning the same
	alias                           // demo takes the spelling for its own flag
	noted                           // accepted, and the log says it changes nothing
	unsupported                     // refused, with the reason
)

// spelling is one row of the table: some options of Uvicorn and Gunicorn,
// and what demo does with them.
type spelling struct {
	uvicorn, gunicorn []string // as typed: "--reload", "-k"
	kind              spellingKind
	demo              string // same and alias: the demo flag; noted and unsupported: why
	takesValue        bool   // noted: a value follows (--loop uvloop)
}

var spellings = []spelling{
	{uvicorn: []string{"APP"}, gunicorn: []string{"APP"}, kind: noted, demo: "demo cannot import Python: the app is built in (--mode) or described in --app FILE"},
	{uvicorn: []string{"--host", "--port"}, kind: same, demo: "`--host`, `--port`"},
	{gunicorn: []string{"-b", "--bind"}, kind: alias, demo: "`--bind`, `-b`: `HOST:PORT`, `HOST`, `unix:PATH` or `fd://N`; once (all workers share one socket)"},
	{uvicorn: []string{"--uds"}, kind: same, demo: "`--uds`"},
	{uvicorn: []string{"--fd"}, kind: same, demo: "`--fd`"},
	{uvicorn: []string{"--workers"}, gunicorn: []string{"-w", "--workers"}, kind: alias, demo: "`--workers`, `-w`; also from `WEB_CONCURRENCY`"},
	{uvicorn: []string{"--backlog"}, gunicorn: []string{"--backlog"}, kind: same, demo: "`--backlog`"},
	{gunicorn: []string{"--reuse-port"}, kind: same, demo: "`--reuse-port`, with a different reach: each worker binds its own SO_REUSEPORT socket (gunicorn sets the option on its one shared socket)"},
	{uvicorn: []string{"--log-level"}, gunicorn: []string{"--log-level"}, kind: same, demo: "`--log-level`: trace, debug, info, warning, error, critical"},
	{uvicorn: []string{"--access-log", "--no-access-log"}, kind: same, demo: "`--access-log`, `--no-access-log`"},
	{uvicorn: []string{"--proxy-headers", "--no-proxy-headers"}, kind: same, demo: "`--proxy-headers`, `--no-proxy-headers`"},
	{uvicorn: []string{"--forwarded-allow-ips"}, gunicorn: []string{"--forwarded-allow-ips"}, kind: same, demo: "`--forwarded-allow-ips`; also from `FORWARDED_ALLOW_IPS`"},
	{uvicorn: []string{"--root-path"}, kind: same, demo: "`--root-path`"},
	{uvicorn: []string{"--limit-concurrency"}, kind: same, demo: "`--limit-concurrency`"},
	{uvicorn: []string{"--limit-max-requests"}, gunicorn: []string{"--max-requests"}, kind: alias, demo: "`--limit-max-requests`, `--max-requests`"},
	{gunicorn: []string{"--max-requests-jitter"}, kind: alias, demo: "`--limit-max-requests-jitter`, `--max-requests-jitter`"},
	{uvicorn: []string{"--timeout-keep-alive"}, gunicorn: []string{"--keep-alive"}, kind: alias, demo: "`--timeout-keep-alive`, `--keep-alive`"},
	{uvicorn: []string{"--timeout-graceful-shutdown"}, gunicorn: []string{"--graceful-timeout"}, kind: alias, demo: "`--timeout-graceful-shutdown`, `--graceful-timeout`"},
	{uvicorn: []string{"--timeout-worker-healthcheck"}, kind: same, demo: "`--timeout-worker-healthcheck`"},
	{gunicorn: []string{"-t", "--timeout"}, kind: alias, demo: "`--timeout`, `-t`: a worker whose event loop is blocked that long is killed (default 0: never; gunicorn's is 30)"},
	{uvicorn: []string{"--h11-max-incomplete-event-size"}, kind: same, demo: "`--h11-max-incomplete-event-size`: the largest header block"},
	{uvicorn: []string{"--version"}, gunicorn: []string{"-v", "--version"}, kind: same, demo: "`demo --version`, `demo -v`, `demo version`"},
	{uvicorn: []string{"--loop"}, kind: noted, takesValue: true, demo: "each demo worker runs one epoll event loop of its own"},
	{uvicorn: []string{"--http"}, kind: noted, takesValue: true, demo: "demo has one HTTP/1.1 parser, its own, on the event loop"},
	{uvicorn: []string{"--ws", "--ws-max-size", "--ws-max-queue", "--ws-ping-interval", "--ws-ping-timeout", "--ws-per-message-deflate"}, kind: noted, takesValue: true, demo: "demo serves no WebSockets"},
	{uvicorn: []string{"--lifespan"}, kind: noted, takesValue: true, demo: "demo's apps have no startup or shutdown events"},
	{uvicorn: []string{"--interface"}, kind: noted, takesValue: true, demo: "demo's app is its own, not an ASGI or WSGI callable"},
	{uvicorn: []string{"--app-dir"}, kind: noted, takesValue: true, demo: "APP is not imported"},
	{uvicorn: []string{"--factory"}, kind: noted, demo: "APP is not imported"},
	{uvicorn: []string{"--use-colors", "--no-use-colors"}, kind: noted, demo: "demo's console lines are never coloured"},
	{gunicorn: []string{"-k", "--worker-class"}, kind: noted, takesValue: true, demo: "every demo worker is like uvicorn.workers.UvicornWorker: one event loop"},
	{uvicorn: []string{"--reload", "--reload-dir", "--reload-include", "--reload-exclude", "--reload-delay"}, gunicorn: []string{"--reload", "--reload-engine", "--reload-extra-file"}, kind: unsupported, demo: "demo watches no files; SIGHUP restarts the workers one at a time, and each reads --app FILE again"},
	{uvicorn: []string{"--env-file"}, gunicorn: []string{"-e", "--env"}, kind: unsupported, demo: "set the environment of demo itself; its flags read DEMO_ variables (DEMO_WORKERS, DEMO_TIMEOUT, ...)"},
	{uvicorn: []string{"--log-config"}, gunicorn: []string{"--log-config", "--logger-class", "--access-logformat"}, kind: unsupported, demo: "the log lines are uvicorn's; --log-format json writes them as JSON"},
	{gunicorn: []string{"--access-logfile", "--error-logfile", "--log-file", "--capture-output", "--log-syslog", "--log-syslog-to", "--log-syslog-prefix", "--log-syslog-facility", "--disable-redirect-access-to-syslog", "-R", "--enable-stdio-inheritance"}, kind: unsupported, demo: "every line goes to stderr (--no-access-log turns the access lines off); redirect it, or let systemd's journal collect it"},
	{uvicorn: []string{"--ssl-keyfile", "--ssl-certfile", "--ssl-keyfile-password", "--ssl-version", "--ssl-cert-reqs", "--ssl-ca-certs", "--ssl-ciphers"}, gunicorn: []string{"--keyfile", "--certfile", "--ssl-version", "--cert-reqs", "--ca-certs", "--ciphers", "--suppress-ragged-eofs", "--do-handshake-on-connect"}, kind: unsupported, demo: "demo speaks plain HTTP; end TLS in a proxy in front (see --proxy-headers)"},
	{uvicorn: []string{"--header", "--server-header", "--no-server-header", "--date-header", "--no-date-header"}, kind: unsupported, demo: "demo always sends Server: demo and a Date header, and no others of yours"},
	{gunicorn: []string{"--threads", "--worker-connections"}, kind: unsupported, demo: "a demo worker is one event loop; --threadpool-size sizes the pool that runs def routes, --limit-concurrency caps a worker's connections"},
	{gunicorn: []string{"--limit-request-line", "--limit-request-fields", "--limit-request-field_size"}, kind: unsupported, demo: "--h11-max-incomplete-event-size limits the whole header block instead"},
	{gunicorn: []string{"-c", "--config", "--check-config", "--print-config"}, kind: unsupported, demo: "there is no config file: flags, and DEMO_ variables (DEMO_WORKERS, ...); demo app check FILE checks an app file"},
	{gunicorn: []string{"-D", "--daemon", "-p", "--pid", "-u", "--user", "-g", "--group", "-m", "--umask", "--initgroups", "--chdir", "--worker-tmp-dir"}, kind: unsupported, demo: "run demo under a service manager, which does this (systemd: User=, WorkingDirectory=, PIDFile= is not needed)"},
	{gunicorn: []string{"-n", "--name"}, kind: unsupported, demo: "ps already shows each worker as demo worker I/N --mode M, and its loop thread as demo-worker-I"},
	{gunicorn: []string{"--preload", "--pythonpath", "--paste", "--paster", "--paste-global", "--spew", "--no-sendfile"}, kind: unsupported, demo: "these are about loading and running Python code, which demo does not"},
	{gunicorn: []string{"--statsd-host", "--statsd-prefix", "--dogstatsd-tags"}, kind: unsupported, demo: "demo status reads the master's live table"},
	{gunicorn: []string{"--proxy-protocol", "--proxy-allow-from"}, kind: unsupported, demo: "only X-Forwarded-For and X-Forwarded-Proto (--proxy-headers)"},
	{gunicorn: []string{"--strip-header-spaces", "--tolerate-dangerous-framing"}, kind: unsupported, demo: "demo answers a malformed request 400, always"},
}

// notedFlags are serve's hidden flags for the noted spellings: accepted so
// a pasted command line runs, and noted in the log.
func notedFlags() []cli.Flag {
	var flags []cli.Flag
	for _, s := range spellings {
		if s.kind != noted {
			continue
		}
		for _, name := range slices.Concat(s.uvicorn, s.gunicorn) {
			name = strings.TrimLeft(name, "-")
			if name == "APP" || slices.ContainsFunc(flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), name) }) {
				continue
			}
			if s.takesValue {
				flags = append(flags, &cli.StringFlag{Name: name, Hidden: true})
			} else {
				flags = append(flags, &cli.BoolFlag{Name: name, Hidden: true})
			}
		}
	}
	return flags
}

// noteForeign logs the APP argument and each noted flag given, each with
// why it changes nothing.
func noteForeign(c *cli.Context, log *zap.Logger, cfg worker.Config) {
	if app := c.Args().First(); app != "" {
		serving := fmt.Sprintf("the built-in app, --mode %s", cfg.Mode)
		if cfg.AppFile != "" {
			serving = "the app in " + cfg.AppFile
		}
		log.Info(fmt.Sprintf("APP %q noted, not imported (demo cannot import Python): serving %s", app, serving))
	}
	for _, s := range spellings {
		if s.kind != noted {
			continue
		}
		for _, name := range slices.Concat(s.uvicorn, s.gunicorn) {
			name = strings.TrimLeft(name, "-")
			if name == "APP" || !c.IsSet(name) {
				continue
			}
			given := dashed(name)
			if s.takesValue {
				given += " " + c.String(name)
			}
			log.Info(fmt.Sprintf("%s noted, changes nothing: %s", given, s.demo))
		}
	}
}

// whyUnsupported reports whether name is an option of Uvicorn or Gunicorn
// that `demo serve` refuses, and why.
func whyUnsupported(c *cli.Context, name string) (string, bool) {
	if c.Command == nil || c.Command.Name != "serve" {
		return "", false
	}
	for _, s := range spellings {
		if s.kind == unsupported && slices.Contains(slices.Concat(s.uvicorn, s.gunicorn), dashed(name)) {
			return s.demo, true
		}
	}
	return "", false
}
