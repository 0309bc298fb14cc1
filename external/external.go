// Package external is the slow third-party API of the article: every GET /
// waits a fixed delay and then answers {"message":"Hello World"}. It is an
// ordinary net/http server on purpose — a waiting request costs a parked
// goroutine and a timer, never a thread — so thousands of requests can wait
// at once and none outlives its client.
package external

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
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

// Serve answers on ln until ctx is done, then closes the listener, lets
// waiting requests go (their clients get a closed connection) and returns.
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	srv := &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(cfg.Logger),
	}
	cfg.Logger.Info(fmt.Sprintf("demo external running on http://%s (delay %s, Press CTRL+C to quit)", ln.Addr(), cfg.Delay))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("external api: %w", err)
	case <-ctx.Done():
	}
	// Requests still waiting would each hold shutdown for up to the delay;
	// like uvicorn after its graceful period, drop them.
	cfg.Logger.Info("Shutting down")
	if err := srv.Close(); err != nil {
		return fmt.Errorf("close external api: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("external api: %w", err)
	}
	return nil
}
