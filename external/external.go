// Package external is the slow third-party API of the article: every GET /
// waits a fixed delay and then answers {"message":"Hello World"}.
//
// The article's API is `await asyncio.sleep(20)` on Uvicorn's event loop,
// and so is this one: it runs on the project's own event loops (package
// eventloop), one per CPU, each on its own OS thread, where a waiting
// request is a timer on its loop — no goroutine, no thread. Thousands wait
// at once, and a burst costs little more than the syscalls of each
// connection, so the API stays out of the way of what it helps to measure
// on the machine it shares with it.
//
// It listens on several SO_REUSEPORT sockets (Listen) for the same reason:
// the kernel caps one socket's accept queue at net.core.somaxconn, and a
// burst of connections beyond it is dropped and retried by TCP a second
// later.
//
// With a Fault configured (fault.go), a share of the connections misbehave
// on purpose — refuse, hang, answer garbage, reset, never end, drip — so
// that what each of demo's modes makes of a bad upstream can be seen and
// tested; still on the loops, without a goroutine per connection.
//
// Using eventloop and sockets is a choice, and they are all it uses of the
// server: as libraries, never worker or supervisor (deps_test.go holds it
// to that). The catch is that one loop is then on both sides of every
// measurement, so a bug in it could hide as a slow API. The end-to-end
// tests therefore also run the article's stories against an external API
// written with net/http alone.
package external

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
	"demo/eventloop"
	"demo/setting"
	"demo/sockets"
)

// Defaults of Listen's parameters, for the command line.
const (
	DefaultListeners = 8
	// DefaultBacklog asks for the most the kernel allows: it silently caps
	// a backlog at net.core.somaxconn.
	DefaultBacklog = 65535
)

// goneCheckInterval is how often a loop looks for waiting requests whose
// client hung up. The server notices a hang-up (it keeps reading while a
// request is in flight) but has no callback for it, so the loop polls; the
// poll touches only loops with requests waiting.
const goneCheckInterval = 100 * time.Millisecond

// statusClientGone answers a request whose client left before its delay
// ran out: nginx's "client closed request". The connection closes with it;
// only a client that merely half-closed its side can still read it.
const statusClientGone = 499

// idleTimeout is how long a new connection may stay silent before its
// request: generous, since a load generator may open thousands of
// connections before it sends anything on them.
const idleTimeout = 10 * time.Second

// Config is what `demo external` takes.
type Config struct {
	Delay  time.Duration
	Logger *zap.Logger
	// Loops is how many event loops serve the listeners, each on its own
	// OS thread; 0 means one per CPU the Go runtime uses (GOMAXPROCS).
	// There are never more loops than listeners.
	Loops int
	// Fault, when set, is how a share of connections fail: FaultRate of
	// them, spread evenly and deterministically (see spread).
	Fault     Fault
	FaultRate float64
}

// Validate checks the settings; its errors are *setting.Error naming the
// Config field.
func (c *Config) Validate() error {
	if c.Fault != "" {
		if _, err := ParseFault(string(c.Fault)); err != nil {
			return err
		}
	}
	switch {
	case c.Delay < 0:
		return setting.Errorf("Delay", "must not be negative, got %v", c.Delay)
	case !(c.FaultRate >= 0 && c.FaultRate <= 1): // NaN too
		return setting.Errorf("FaultRate", "must be between 0 and 1, got %v", c.FaultRate)
	case c.Loops < 0:
		return setting.Errorf("Loops", "must be 0 (one per CPU) or more, got %d", c.Loops)
	}
	return nil
}

var (
	helloWorld       = []byte(`{"message":"Hello World"}`)
	notFound         = []byte("404 page not found\n")
	methodNotAllowed = []byte("Method Not Allowed\n")
)

// Listener is one listening socket made by Listen, for Serve.
type Listener struct {
	addr *net.TCPAddr

	mu sync.Mutex
	fd int // -1 once closed or handed to Serve
}

// Addr is the address the socket listens on.
func (l *Listener) Addr() net.Addr { return l.addr }

// Close closes the socket, unless Serve has taken it (Serve closes what it
// takes). It may be called more than once.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	if err != nil {
		return fmt.Errorf("close listener %s: %w", l.addr, err)
	}
	return nil
}

// take hands the socket over to the caller, who closes it.
func (l *Listener) take() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return -1, fmt.Errorf("listener %s is closed or already served", l.addr)
	}
	fd := l.fd
	l.fd = -1
	return fd, nil
}

// Listen opens n listening sockets on host:port (port 0 picks one free port
// for all of them) with SO_REUSEPORT, so the kernel spreads incoming
// connections over n accept queues of backlog each.
//
// A port some other process listens on is refused ("address already in
// use") even if that process set SO_REUSEPORT too: the port is first bound
// without it, as a check, and released just before the real sockets bind.
func Listen(host string, port, n, backlog int) (lns []*Listener, err error) {
	switch {
	case n < 1:
		return nil, setting.Errorf("Listeners", "must be at least 1, got %d", n)
	case backlog < 1:
		return nil, setting.Errorf("Backlog", "must be at least 1, got %d", backlog)
	}
	probe, addr, err := sockets.BindTCP(host, port, false)
	if err != nil {
		return nil, err
	}
	unix.Close(probe)
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			lns = nil
		}
	}()
	for range n {
		fd, bound, err := sockets.ListenReusePort(addr.IP.String(), addr.Port, backlog)
		if err != nil {
			return lns, err
		}
		lns = append(lns, &Listener{addr: bound, fd: fd})
	}
	return lns, nil
}

// Serve answers on every listener in lns until ctx is done, then drops the
// requests still waiting (their clients see the connection close), closes
// the listeners and returns nil. It takes lns over: it closes them itself.
func Serve(ctx context.Context, lns []*Listener, cfg Config) error {
	return serveWith(ctx, lns, cfg, nil)
}

// serveWith is Serve; started, when set, sees the loops' apis before they
// run (a test's window on them: only through Post).
func serveWith(ctx context.Context, lns []*Listener, cfg Config, started func([]*api)) (err error) {
	if len(lns) == 0 {
		return errors.New("external api: no listener")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("external api: %w", err)
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			if cerr := unix.Close(fd); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close external api listener: %w", cerr))
			}
		}
		for _, ln := range lns {
			ln.Close() // any not taken yet, after an early error
		}
	}()
	for _, ln := range lns {
		fd, err := ln.take()
		if err != nil {
			return fmt.Errorf("external api: %w", err)
		}
		fds = append(fds, fd)
	}

	faults := &spread{rate: cfg.FaultRate} // one count over every loop
	n := cfg.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	apis := make([]*api, min(n, len(fds)))
	defer func() {
		for _, a := range apis {
			if a != nil {
				if cerr := a.loop.Close(); cerr != nil {
					err = errors.Join(err, fmt.Errorf("close external api loop: %w", cerr))
				}
			}
		}
	}()
	for i := range apis {
		loop, err := eventloop.New()
		if err != nil {
			return fmt.Errorf("external api: %w", err)
		}
		apis[i] = &api{loop: loop, delay: cfg.Delay, log: cfg.Logger}
		if cfg.Fault != "" {
			apis[i].fault, apis[i].spread = cfg.Fault, faults
			apis[i].faultConns = map[*faultConn]struct{}{}
		}
	}
	srvCfg := eventloop.ServerConfig{
		// One request per connection (see serve), so this only bounds how
		// long a new connection may wait to send it.
		KeepAliveTimeout: idleTimeout,
		ErrorLog: func(msg string, err error) {
			cfg.Logger.Error(msg, zap.Error(err))
		},
	}
	// The kernel spreads connections evenly over the sockets, so dealing
	// the sockets out evenly spreads the work over the loops.
	for i, fd := range fds {
		a := apis[i%len(apis)]
		if cfg.Fault != "" {
			if err := a.listenFaulty(fd); err != nil {
				return fmt.Errorf("external api: %w", err)
			}
			continue
		}
		srv, err := eventloop.NewServer(a.loop, fd, srvCfg, a.serve)
		if err != nil {
			return fmt.Errorf("external api: %w", err)
		}
		a.servers = append(a.servers, srv)
	}

	notes := []string{"delay " + cfg.Delay.String()}
	if cfg.Fault != "" {
		notes = append(notes, fmt.Sprintf("fault %s on %g%% of connections", cfg.Fault, 100*cfg.FaultRate))
	}
	url := "http://" + lns[0].Addr().String()
	cfg.Logger.Info(contract.RunningMsg(contract.ExternalName, url, notes...), contract.RunningFields(url))
	if started != nil {
		started(apis)
	}
	// Run locks each loop to its own OS thread.
	errc := make(chan error, len(apis))
	var wg sync.WaitGroup
	for _, a := range apis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- a.loop.Run()
		}()
	}
	var failed error
	select {
	case failed = <-errc: // only a broken epoll set ends a loop early
	case <-ctx.Done():
		// Requests still waiting would each hold shutdown for up to the
		// delay; like uvicorn after its graceful period, drop them.
		cfg.Logger.Info("Shutting down")
	}
	for _, a := range apis {
		a.loop.Post(a.stop)
	}
	wg.Wait()
	close(errc)
	for e := range errc {
		failed = errors.Join(failed, e)
	}
	if failed != nil {
		return fmt.Errorf("external api: %w", failed)
	}
	return nil
}

// api is what one event loop serves: its share of the listeners and the
// requests waiting on it. Everything in it belongs to the loop goroutine.
type api struct {
	loop    *eventloop.Loop
	servers []*eventloop.Server
	delay   time.Duration

	waiting   []*waiter        // in no order; each knows its index
	goneCheck *eventloop.Timer // runs while requests wait

	log *zap.Logger
	// In fault mode (fault.go) the listeners and connections are served
	// raw instead of by servers.
	fault          Fault
	spread         *spread
	faultListeners []*faultListener
	faultConns     map[*faultConn]struct{}
}

// waiter is a GET / waiting out the delay: asyncio.sleep's timer handle.
type waiter struct {
	a     *api
	w     *eventloop.ResponseWriter
	timer *eventloop.Timer
	i     int // index in a.waiting
}

func (a *api) serve(w *eventloop.ResponseWriter, r *eventloop.Request) {
	// One request per connection, and the server closes it: the side that
	// closes first keeps the socket in TIME_WAIT for a minute. On the
	// server that costs nothing, but clients that hang up first (a
	// keep-alive client closing its idle connections) each leave an
	// ephemeral port in TIME_WAIT towards this very address, and after a
	// burst every later connect(2) to it searches the port range
	// (docs/performance.md, optimisation 4). The worker's calls send
	// "Connection: close" anyway.
	r.Close = true
	// The answers of net/http's ServeMux to a single "GET /{$}" route.
	if r.URL.Path != "/" {
		w.Respond(http.StatusNotFound, "text/plain; charset=utf-8", notFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.Respond(http.StatusMethodNotAllowed, "text/plain; charset=utf-8", methodNotAllowed)
		return
	}
	wt := &waiter{a: a, w: w, i: len(a.waiting)}
	wt.timer = a.loop.AfterFunc(a.delay, wt.fire)
	a.waiting = append(a.waiting, wt)
	if a.goneCheck == nil {
		a.goneCheck = a.loop.AfterFunc(goneCheckInterval, a.dropGone)
	}
}

// fire ends the wait. A client that left meanwhile gets the answer anyway:
// Respond is what releases its connection.
func (wt *waiter) fire() {
	wt.a.remove(wt)
	wt.w.Respond(http.StatusOK, "application/json", helloWorld)
}

func (a *api) remove(wt *waiter) {
	last := len(a.waiting) - 1
	moved := a.waiting[last]
	a.waiting[wt.i], moved.i = moved, wt.i
	a.waiting[last] = nil
	a.waiting = a.waiting[:last]
}

// dropGone stops the wait of every request whose client hung up, so an
// abandoned request holds its socket for at most goneCheckInterval rather
// than the whole delay.
func (a *api) dropGone() {
	a.goneCheck = nil
	for i := 0; i < len(a.waiting); {
		wt := a.waiting[i]
		if !wt.w.ClientGone() {
			i++
			continue
		}
		a.loop.StopTimer(wt.timer)
		a.remove(wt) // moves the last waiter to i
		wt.w.Respond(statusClientGone, "", nil)
	}
	if len(a.waiting) > 0 {
		a.goneCheck = a.loop.AfterFunc(goneCheckInterval, a.dropGone)
	}
}

// stop closes every connection, waiting ones included, and ends the loop.
func (a *api) stop() {
	for _, srv := range a.servers {
		srv.Close()
	}
	for _, fl := range a.faultListeners {
		a.loop.Remove(fl.fd) // Serve closes it
		if fl.retry != nil {
			a.loop.StopTimer(fl.retry)
		}
	}
	for c := range a.faultConns {
		c.close()
	}
	for _, wt := range a.waiting {
		a.loop.StopTimer(wt.timer)
	}
	a.waiting = nil
	if a.goneCheck != nil {
		a.loop.StopTimer(a.goneCheck)
		a.goneCheck = nil
	}
	a.loop.Stop()
}
