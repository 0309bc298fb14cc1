package external

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// serveFault runs the external API with a fault on 127.0.0.1:0 until the
// test ends and returns its address.
func serveFault(t *testing.T, cfg Config) string {
	t.Helper()
	lns, err := Listen("127.0.0.1", 0, 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lns, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	return lns[0].Addr().String()
}

// rawCall sends a request on a fresh connection and reads until the
// server closes, the connection breaks, max bytes came, or within passed.
func rawCall(t *testing.T, addr, method string, max int, within time.Duration) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err // a reset can come before Dial returns
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(within))
	if _, err := fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\n\r\n", method); err != nil {
		return nil, err
	}
	var got []byte
	buf := make([]byte, 64<<10)
	for len(got) < max {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return got, err
		}
	}
	return got, nil
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

func TestFaults(t *testing.T) {
	defer func(d time.Duration) { dripInterval = d }(dripInterval)
	dripInterval = 5 * time.Millisecond // before Serve starts: the loops read it
	delay := 50 * time.Millisecond
	for _, tc := range []struct {
		fault Fault
		check func(t *testing.T, got []byte, err error, took time.Duration)
	}{
		{Refuse, func(t *testing.T, got []byte, err error, _ time.Duration) {
			// A reset that arrives before the request is written fails the
			// connect or the write (ECONNRESET, or EPIPE after it).
			if !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) || len(got) > 0 {
				t.Errorf("got %q, %v; want nothing but a reset", got, err)
			}
		}},
		{Hang, func(t *testing.T, got []byte, err error, _ time.Duration) {
			if !isTimeout(err) || len(got) > 0 {
				t.Errorf("got %q, %v; want no answer at all", got, err)
			}
		}},
		{Garbage, func(t *testing.T, got []byte, err error, took time.Duration) {
			if err != nil || !bytes.Equal(got, garbage) || took < delay {
				t.Errorf("got %q, %v after %v; want %q after the delay, then the close", got, err, took, garbage)
			}
		}},
		{Reset, func(t *testing.T, got []byte, err error, _ time.Duration) {
			if !errors.Is(err, syscall.ECONNRESET) || !bytes.Equal(got, resetResponse) {
				t.Errorf("got %q, %v; want the headers and part of the body, then a reset", got, err)
			}
		}},
		{EndlessBody, func(t *testing.T, got []byte, err error, _ time.Duration) {
			if err != nil || len(got) < 4<<20 || !bytes.HasPrefix(got, endlessHeader) {
				t.Errorf("got %d bytes (%q...), %v; want 200 and a body past 4 MiB", len(got), got[:min(len(got), 80)], err)
			}
		}},
		{Drip, func(t *testing.T, got []byte, err error, took time.Duration) {
			if err != nil || !bytes.Equal(got, helloResponse) || took < time.Duration(len(helloResponse)-1)*dripInterval {
				t.Errorf("got %q, %v after %v; want the whole answer, one byte per %v", got, err, took, dripInterval)
			}
		}},
		{Status500, func(t *testing.T, got []byte, err error, _ time.Duration) {
			resp, perr := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
			if err != nil || perr != nil || resp.StatusCode != 500 {
				t.Errorf("got %q, %v; want a 500 answer", got, err)
			}
		}},
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			addr := serveFault(t, Config{Delay: delay, Fault: tc.fault, FaultRate: 1})
			within := 5 * time.Second
			if tc.fault == Hang {
				within = delay + 300*time.Millisecond
			}
			start := time.Now()
			got, err := rawCall(t, addr, "GET", 4<<20, within)
			tc.check(t, got, err, time.Since(start))
		})
	}
}

// TestFaultRateAlternates: at rate 0.5 every second connection fails,
// starting with the second — the same every run.
func TestFaultRateAlternates(t *testing.T) {
	addr := serveFault(t, Config{Fault: Status500, FaultRate: 0.5})
	var codes []string
	for range 6 {
		got, err := rawCall(t, addr, "GET", 1<<20, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, string(got[9:12]))
	}
	if s := strings.Join(codes, " "); s != "200 500 200 500 200 500" {
		t.Errorf("statuses %s, want 200 and 500 alternating", s)
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want string
	}{
		{0, "...................."},
		{1, "XXXXXXXXXXXXXXXXXXXX"},
		{0.5, ".X.X.X.X.X.X.X.X.X.X"},
		{0.25, "...X...X...X...X...X"},
		{0.1, ".........X.........X"},
		{0.75, ".XXX.XXX.XXX.XXX.XXX"},
	} {
		s := &spread{rate: tc.rate}
		var b strings.Builder
		for range 20 {
			if s.next() {
				b.WriteByte('X')
			} else {
				b.WriteByte('.')
			}
		}
		if b.String() != tc.want {
			t.Errorf("rate %v: %s, want %s", tc.rate, b.String(), tc.want)
		}
	}
}

// TestFaultModeStillRoutes: spared connections get the usual answers, HEAD
// and the 404/405 of other paths and methods included.
func TestFaultModeStillRoutes(t *testing.T) {
	addr := serveFault(t, Config{Fault: Status500, FaultRate: 0})
	for _, tc := range []struct{ method, path, status, body string }{
		{"GET", "/", "200", `{"message":"Hello World"}`},
		{"HEAD", "/", "200", ""},
		{"GET", "/other", "404", "404 page not found\n"},
		{"POST", "/", "405", "Method Not Allowed\n"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", tc.method, tc.path)
		raw, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: tc.method})
		if err != nil {
			t.Fatalf("%s %s: %v in %q", tc.method, tc.path, err, raw)
		}
		body, _ := io.ReadAll(resp.Body)
		if fmt.Sprint(resp.StatusCode) != tc.status || string(body) != tc.body {
			t.Errorf("%s %s: %d %q, want %s %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// TestFaultConnectionsAreReleased: clients that give up on a hanging, an
// endless or a dripping answer leave nothing behind, and shutdown closes
// what is still open.
func TestFaultConnectionsAreReleased(t *testing.T) {
	for _, fault := range []Fault{Hang, EndlessBody, Drip} {
		t.Run(string(fault), func(t *testing.T) {
			lns, err := Listen("127.0.0.1", 0, 1, 64)
			if err != nil {
				t.Fatal(err)
			}
			addr := lns[0].Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			var count func() int
			ready := make(chan struct{})
			go func() {
				done <- serveWith(ctx, lns, Config{Fault: fault, FaultRate: 1, Logger: zap.NewNop(), Loops: 1}, func(apis []*api) {
					a := apis[0]
					count = func() int {
						n := make(chan int, 1)
						a.loop.Post(func() { n <- len(a.faultConns) })
						return <-n
					}
					close(ready)
				})
			}()
			<-ready
			for range 5 {
				rawCall(t, addr, "GET", 1<<20, 100*time.Millisecond) // gives up
			}
			deadline := time.Now().Add(5 * time.Second)
			for count() > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections still held after their clients left", count())
				}
				time.Sleep(10 * time.Millisecond)
			}
			c, err := net.Dial("tcp", addr) // one still open at shutdown
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, c); isTimeout(err) {
				t.Error("connection still open after shutdown")
			}
		})
	}
}

func TestFaultConfigIsChecked(t *testing.T) {
	for _, cfg := range []Config{
		{Fault: "slow"},
		{Fault: Hang, FaultRate: 1.5},
		{Fault: Hang, FaultRate: -0.1},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := ParseFault("slow"); err == nil || !strings.Contains(err.Error(), "refuse, hang, garbage, reset, endless-body, drip, status-500") {
		t.Errorf("ParseFault: %v", err)
	}
}
