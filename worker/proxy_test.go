package worker

import (
	"net/http"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"demo/setting"
)

func TestForwardedBelievesTrustedPeersOnly(t *testing.T) {
	for _, tc := range []struct {
		trusted, peer string
		header        http.Header
		client        string
		scheme        string
	}{
		// uvicorn's default: only 127.0.0.1 is believed.
		{"127.0.0.1", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}}, "203.0.113.7:0", "https"},
		{"127.0.0.1", "192.0.2.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}}, "192.0.2.1:5000", "http"},
		{"", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.7"}}, "127.0.0.1:5000", "http"},
		// Either header alone; neither.
		{"127.0.0.1", "127.0.0.1:5000", http.Header{"X-Forwarded-Proto": {" HTTPS"}}, "127.0.0.1:5000", "https"},
		{"127.0.0.1", "192.0.2.1:5000", http.Header{"X-Forwarded-Proto": {"https"}}, "192.0.2.1:5000", "http"},
		{"127.0.0.1", "127.0.0.1:5000", http.Header{"Accept": {"*/*"}}, "127.0.0.1:5000", "http"},
		// The nearest hop that is not a trusted proxy is the client; what
		// the client itself wrote further left is not believed.
		{"127.0.0.1,10.0.0.0/8", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"6.6.6.6, 203.0.113.7, 10.1.2.3"}}, "203.0.113.7:0", "http"},
		// Several header lines are one list.
		{"127.0.0.1,10.0.0.0/8", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"6.6.6.6", "203.0.113.7, 10.1.2.3"}}, "203.0.113.7:0", "http"},
		// Every hop trusted, or `*`: the first one.
		{"127.0.0.1,10.0.0.0/8", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"10.9.9.9, 10.1.2.3"}}, "10.9.9.9:0", "http"},
		{"*", "192.0.2.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.7, 10.1.2.3"}}, "203.0.113.7:0", "http"},
		// IPv6, and a hop with a port.
		{"::1", "[::1]:5000", http.Header{"X-Forwarded-For": {"2001:db8::7"}}, "[2001:db8::7]:0", "http"},
		{"127.0.0.1", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.7:4711"}}, "203.0.113.7:0", "http"},
		// What is not an address, or not a scheme, is not believed.
		{"127.0.0.1", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {`" 200 "forged`}, "X-Forwarded-Proto": {"gopher"}}, "127.0.0.1:5000", "http"},
		// A unix-socket peer is trusted by the literal unix.
		{"unix", "unix", http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"wss"}}, "203.0.113.7:0", "wss"},
		{"127.0.0.1", "unix", http.Header{"X-Forwarded-For": {"203.0.113.7"}}, "unix", "http"},
	} {
		tp, err := parseTrusted(tc.trusted)
		if err != nil {
			t.Fatalf("%q: %v", tc.trusted, err)
		}
		client, scheme := tp.forwarded(tc.peer, tc.header)
		if client != tc.client || scheme != tc.scheme {
			t.Errorf("trusted %q, peer %s, %v: client %q scheme %q, want %q %q", tc.trusted, tc.peer, tc.header, client, scheme, tc.client, tc.scheme)
		}
	}
}

func TestParseTrustedRejectsWhatIsNotAnAddress(t *testing.T) {
	for _, bad := range []string{"localhost", "10.0.0.0/33", "1.2.3"} {
		if _, err := parseTrusted(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.ForwardedAllowIPs = "localhost"
	if e, ok := setting.As(cfg.Validate()); !ok || e.Name != "ForwardedAllowIPs" {
		t.Errorf("Validate: %v, want an error naming ForwardedAllowIPs", cfg.Validate())
	}
}

// TestAccessLineWithProxyAndRootPath: the access line shows the forwarded
// client and the root path in front of the path; JSON also carries the
// scheme.
func TestAccessLineWithProxyAndRootPath(t *testing.T) {
	rec := &lineRecorder{Core: zapcore.NewNopCore(), record: true}
	a := newTestApp(t, zap.New(rec).Named("worker-1[123]"))
	a.cfg.RootPath = "/api"
	a.proxies, _ = parseTrusted("127.0.0.1")
	h := http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}}
	a.accessLog("127.0.0.1:54321", "GET", "/healthcheck?x=1", "HTTP/1.1", 200, h)
	a.accessLog("192.0.2.1:54321", "GET", "/healthcheck", "HTTP/1.1", 200, h)
	a.accessLog("127.0.0.1:54321", "", "", "", 400, nil)
	want := []string{
		`203.0.113.7:0 - "GET /api/healthcheck?x=1 HTTP/1.1" 200`,
		`192.0.2.1:54321 - "GET /api/healthcheck HTTP/1.1" 200`,
		`127.0.0.1:54321 - "  " 400`,
	}
	if len(rec.msgs) != len(want) {
		t.Fatalf("lines %q, want %q", rec.msgs, want)
	}
	for i := range want {
		if rec.msgs[i] != want[i] {
			t.Errorf("line %q, want %q", rec.msgs[i], want[i])
		}
	}
	rec.record = false
	plain := http.Header{"Accept": {"*/*"}}
	if n := testing.AllocsPerRun(100, func() {
		a.accessLog("127.0.0.1:54321", "GET", "/healthcheck", "HTTP/1.1", 200, plain)
	}); n != 0 {
		t.Errorf("%v allocations per access line without forwarding headers", n)
	}
}
