package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEveryModeAnswersEveryFaultAlike: whatever the external API does
// wrong, each handler mode answers the same — 502 for a bad answer, 504
// for none in time — with the request id in a JSON body, and the worker
// keeps serving. (An endless body used to be 200 in mixed and threadpool
// modes, after reading 1 MiB of it.)
func TestEveryModeAnswersEveryFaultAlike(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fault  string
		status int
	}{
		{"refuse", 502},
		{"hang", 504},
		{"garbage", 502},
		{"reset", 502},
		{"endless-body", 502},
		{"drip", 504},
		{"status-500", 502},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			ext := startDemo(t, "external", "--port", "0", "--delay", "0s", "--fault", tc.fault)
			_, m := ext.waitLine(externalRunning, 0, 10*time.Second)
			p, url := startServe(t, "--mode", "async", "--calls", "1", "--external-timeout", "1s", "--external", m[1])
			for _, path := range []string{"/mixed", "/all-async", "/threadpool"} {
				r := get(url + path)
				id := r.header.Get("X-Request-ID")
				if r.status != tc.status || r.body["request_id"] != id || id == "" || r.body["error"] == nil {
					t.Errorf("%s: %d %v (%v), want %d with the request id %q", path, r.status, r.body, r.err, tc.status, id)
				}
				if h := get(url + "/healthcheck"); h.status != 200 {
					t.Fatalf("healthcheck after %s: %d %v", path, h.status, h.err)
				}
			}
			if died := p.countBefore(regexp.MustCompile(`Child process \[\d+\] died`), len(p.lines())); died != 0 {
				t.Errorf("a worker died:\n%s", strings.Join(p.lines(), "\n"))
			}
		})
	}
}
