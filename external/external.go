// Package external is the slow third-party API of the article: every GET /
// waits a fixed delay and then answers {"message":"Hello World"}. It is an
// ordinary net/http server on purpose — a waiting request costs a parked
// goroutine and a timer, never a thread — so thousands of requests can wait
// at once and none outlives its client.
//
// It must never be the bottleneck of what it helps to measure, so it
// listens on several SO_REUSEPORT sockets (Listen): the kernel caps one
// socket's accept queue at net.core.somaxconn, and a burst of connections
// beyond it is dropped and retried by TCP a second later.
package external

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/sockets"
)

// Defaults of Listen's parameters, for the command line.
const (
	DefaultListeners = 8
	// DefaultBacklog asks for the most the kernel allows: it silently caps
	// a backlog at net.core.somaxconn.
	DefaultBacklog = 65535
)

// Config is what `demo external` takes.
type Config struct {
	Delay  time.Duration
	Logger *zap.Logger
}

var helloWorld = []byte(`{"message":"Hello World"}`)

// Handler serves GET / after cfg.Delay. A client that goes away stops the
// wait at once, so an abandoned request holds nothing.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(cfg.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(helloWorld)
	})
	return mux
}

// Listen opens n listening sockets on host:port (port 0 picks one free port
// for all of them) with SO_REUSEPORT, so the kernel spreads incoming
// connections over n accept queues of backlog each.
//
// A port some other process listens on is refused ("address already in
// use") even if that process set SO_REUSEPORT too: the port is first bound
// without it, as a check, and released just before the real sockets bind.
func Listen(host string, port, n, backlog int) (lns []net.Listener, err error) {
	if n < 1 || backlog < 1 {
		return nil, fmt.Errorf("listen: want at least 1 listener and a backlog of 1, got %d and %d", n, backlog)
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
		fd, _, err := sockets.BindTCP(addr.IP.String(), addr.Port, true)
		if err != nil {
			return lns, err
		}
		ln, err := listenFD(fd, backlog)
		if err != nil {
			return lns, fmt.Errorf("listen %s: %w", net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port)), err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// listenFD makes the bound socket fd listen and wraps it; fd is consumed.
func listenFD(fd, backlog int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "external-listener")
	defer f.Close() // FileListener holds a duplicate
	if err := unix.Listen(fd, backlog); err != nil {
		return nil, err
	}
	return net.FileListener(f)
}

// Serve answers on every listener in lns until ctx is done, then closes
// them, lets waiting requests go (their clients get a closed connection) and
// returns.
func Serve(ctx context.Context, lns []net.Listener, cfg Config) error {
	if len(lns) == 0 {
		return errors.New("external api: no listener")
	}
	srv := &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(cfg.Logger),
	}
	// One request per connection, closed by the server: the side that
	// closes first keeps the socket in TIME_WAIT for a minute. On the
	// server that costs nothing, but clients that hang up first (a
	// keep-alive client closing its idle connections) each leave an
	// ephemeral port in TIME_WAIT towards this very address, and a burst of
	// 10,000 makes every later connect(2) to it search the port range
	// (measured: 5,000 connects took 0.88 s after such a burst, 0.10 s
	// after one the server closed). The worker's calls send
	// "Connection: close" anyway.
	srv.SetKeepAlivesEnabled(false)
	cfg.Logger.Info(fmt.Sprintf("demo external running on http://%s (delay %s, Press CTRL+C to quit)", lns[0].Addr(), cfg.Delay))
	// One accept loop per listener: each socket has its own accept queue.
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- srv.Serve(ln)
		}()
	}
	var failed error
	select {
	case failed = <-errc:
	case <-ctx.Done():
		// Requests still waiting would each hold shutdown for up to the
		// delay; like uvicorn after its graceful period, drop them.
		cfg.Logger.Info("Shutting down")
	}
	closeErr := srv.Close()
	wg.Wait()
	close(errc)
	if failed != nil {
		return fmt.Errorf("external api: %w", failed)
	}
	for err := range errc {
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("external api: %w", err)
		}
	}
	if closeErr != nil {
		return fmt.Errorf("close external api: %w", closeErr)
	}
	return nil
}
