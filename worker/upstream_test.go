package worker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestBlockingCallRefusesOversizedResponses: a body or a header block over
// the async client's limit is an error in mixed and threadpool modes too
// (502), not a success after reading 1 MiB, nor 10 MB of headers read.
func TestBlockingCallRefusesOversizedResponses(t *testing.T) {
	chunk := []byte(strings.Repeat("x", 64<<10))
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		want string
	}{
		{"endless body", func(w http.ResponseWriter, r *http.Request) {
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, "response body exceeds the limit"},
		{"endless headers", func(w http.ResponseWriter, r *http.Request) {
			for i := range 40 {
				w.Header().Set(fmt.Sprintf("X-Pad-%d", i), string(chunk[:32<<10]))
			}
			w.WriteHeader(200)
		}, "server response headers exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			a := newTestApp(t, zap.NewNop())
			if _, err := a.blockingGet(context.Background(), srv.URL, a.cfg.ExternalTimeout); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("blockingGet: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
