package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"
)

// The bodies demo's worker answers with, byte for byte, so every server in
// the comparison sends the same response body.
var (
	baselineHealthy  = []byte(`{"status":"ok"}`)
	baselineNotFound = []byte(`{"detail":"Not Found"}`)
)

// BaselineHandler is the minimal net/http app the bench compares demo
// with: GET /healthcheck answers {"status":"ok"} as JSON, like demo's
// worker; anything else gets FastAPI's 404 body. It does nothing per request
// beyond what net/http does, so it measures net/http itself.
func BaselineHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthcheck", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(baselineHealthy)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(baselineNotFound)
	})
	return mux
}

// ServeBaseline runs BaselineHandler on ln until ctx is done. It pins the
// Go scheduler to one P (GOMAXPROCS=1), the fair match for one demo worker,
// which runs its loop on one thread. It calls ready with the URL once
// serving, so the caller can announce it.
func ServeBaseline(ctx context.Context, ln net.Listener, ready func(url string)) error {
	runtime.GOMAXPROCS(1)
	srv := &http.Server{Handler: BaselineHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ready("http://" + ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("baseline: %w", err)
	case <-ctx.Done():
	}
	// Load generators are gone by now: there is nothing worth draining.
	if err := srv.Close(); err != nil {
		return fmt.Errorf("close baseline: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("baseline: %w", err)
	}
	return nil
}
