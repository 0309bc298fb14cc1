package eventloop

import (
	"strings"
	"testing"
)

const blockedStack = `goroutine 1 [select, locked to thread]:
runtime.gopark(0x1, 0x2)
	/usr/local/go/src/runtime/proc.go:460 +0xce
runtime.selectgo(0xc0001, 0xc0002, 0x3)
	/usr/local/go/src/runtime/select.go:351 +0x837
net/http.(*persistConn).roundTrip(0xc0003, 0xc0004)
	/usr/local/go/src/net/http/transport.go:2800 +0x979
net/http.(*Transport).roundTrip(0xc0005, 0xc0006)
	/usr/local/go/src/net/http/transport.go:700 +0x1
net/http.(*Transport).RoundTrip(0xc0005, 0xc0006)
	/usr/local/go/src/net/http/roundtrip.go:30 +0x1
net/http.send(0xc0006, {0x1, 0x2})
	/usr/local/go/src/net/http/client.go:259 +0x5e4
net/http.(*Client).send(0xc0007, 0xc0006)
	/usr/local/go/src/net/http/client.go:180 +0x98
net/http.(*Client).do(0xc0007, 0xc0006)
	/usr/local/go/src/net/http/client.go:728 +0x9a9
net/http.(*Client).Do(...)
	/usr/local/go/src/net/http/client.go:590
demo/worker.(*app).blockingGet(0xc0002, {0x9, 0x1})
	/work/main/worker/app.go:190 +0x2
demo/worker.(*app).mixed(0xc0003, 0xc0004, 0xc0005)
	/work/main/worker/app.go:130 +0x3
demo/eventloop.(*conn).dispatch(0xc0006)
	/work/main/eventloop/conn.go:460 +0x4
demo/eventloop.(*Loop).call(0xc0006, 0xc0007)
	/work/main/eventloop/loop.go:120 +0x4
demo/eventloop.(*Loop).Run(0xc0006)
	/work/main/eventloop/loop.go:100 +0x4
demo/worker.Run({0x1})
	/work/main/worker/worker.go:200 +0x4
main.main()
	/work/main/main.go:40 +0x5
`

// TestTrimStack: a loop's stack keeps what blocks it, up to the loop's
// own machinery, in at most max frames — the project's first.
func TestTrimStack(t *testing.T) {
	// A handler resumed by the loop's client (an async call's response)
	// is the callback; the client delivering it is machinery, as for the
	// culprit.
	const resumed = `goroutine 1 [sleep]:
time.Sleep(0x3b9aca00)
	/usr/local/go/src/runtime/time.go:363 +0x165
demo/worker.(*app).sleepStep(0xc0002)
	/work/main/worker/steps.go:100 +0x2
demo/eventloop/client.(*call).deliver(0xc0003)
	/work/main/eventloop/client/call.go:80 +0x3
demo/eventloop.(*Loop).call(0xc0006, 0xc0007)
	/work/main/eventloop/loop.go:120 +0x4
`
	for _, tc := range []struct {
		name  string
		stack string
		max   int
		want  string
	}{
		{"ends at the loop", blockedStack, 20, `goroutine 1 [select, locked to thread]:
runtime.gopark
	/usr/local/go/src/runtime/proc.go:460
runtime.selectgo
	/usr/local/go/src/runtime/select.go:351
net/http.(*persistConn).roundTrip
	/usr/local/go/src/net/http/transport.go:2800
net/http.(*Transport).roundTrip
	/usr/local/go/src/net/http/transport.go:700
net/http.(*Transport).RoundTrip
	/usr/local/go/src/net/http/roundtrip.go:30
net/http.send
	/usr/local/go/src/net/http/client.go:259
net/http.(*Client).send
	/usr/local/go/src/net/http/client.go:180
net/http.(*Client).do
	/usr/local/go/src/net/http/client.go:728
net/http.(*Client).Do
	/usr/local/go/src/net/http/client.go:590
demo/worker.(*app).blockingGet
	/work/main/worker/app.go:190
demo/worker.(*app).mixed
	/work/main/worker/app.go:130
demo/eventloop.(*conn).dispatch
	/work/main/eventloop/conn.go:460
… 4 frames: the event loop and what started it`},
		{"keeps the project's frames first", blockedStack, 5, `goroutine 1 [select, locked to thread]:
runtime.gopark
	/usr/local/go/src/runtime/proc.go:460
… 7 frames
net/http.(*Client).Do
	/usr/local/go/src/net/http/client.go:590
demo/worker.(*app).blockingGet
	/work/main/worker/app.go:190
demo/worker.(*app).mixed
	/work/main/worker/app.go:130
demo/eventloop.(*conn).dispatch
	/work/main/eventloop/conn.go:460
… 4 frames: the event loop and what started it`},
		{"stops at the client", resumed, 10, `goroutine 1 [sleep]:
time.Sleep
	/usr/local/go/src/runtime/time.go:363
demo/worker.(*app).sleepStep
	/work/main/worker/steps.go:100
demo/eventloop/client.(*call).deliver
	/work/main/eventloop/client/call.go:80
… 1 frame: the event loop and what started it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := trimStack(tc.stack, "demo/", "demo/eventloop.", tc.max); got != tc.want {
				t.Errorf("trimStack:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestLoopStackWhileBlocked reads the stack of a loop blocked in a
// callback, from another goroutine, as a worker does on SIGABRT.
func TestLoopStackWhileBlocked(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if s := l.LoopStack(10); s != "" {
		t.Errorf("LoopStack before Run = %q, want empty", s)
	}
	stop := runLoop(t, l)
	defer stop()
	entered, release := make(chan struct{}), make(chan struct{})
	l.Post(func() {
		close(entered)
		<-release // the blocking call
	})
	<-entered
	s := l.LoopStack(10)
	close(release)
	lines := strings.Split(s, "\n")
	if !strings.HasPrefix(lines[0], "goroutine ") || !strings.Contains(lines[0], "[chan receive") {
		t.Errorf("header %q, want the loop goroutine waiting on a channel", lines[0])
	}
	if !strings.Contains(s, "TestLoopStackWhileBlocked") || !strings.HasSuffix(s, "the event loop and what started it") {
		t.Errorf("stack does not end at the blocked callback:\n%s", s)
	}
	if strings.Contains(s, "+0x") || strings.Contains(s, "runLoop") || len(lines) > 1+2*10+2 {
		t.Errorf("stack not trimmed:\n%s", s)
	}
}
