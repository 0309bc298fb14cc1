package eventloop

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// sleepyHandler stands for a handler that makes a blocking call.
func sleepyHandler(d time.Duration) { time.Sleep(d) }

func TestWatchReportsAStallWhileItLastsAndOnceWhenItEnds(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stalls []Stall
	var reportedAt []time.Time
	l.Watch(WatchConfig{
		Threshold: 50 * time.Millisecond,
		Repeat:    150 * time.Millisecond,
		Prefix:    "demo/eventloop.", // the test's own frames play the project's
		Report: func(s Stall) {
			mu.Lock()
			defer mu.Unlock()
			stalls = append(stalls, s)
			reportedAt = append(reportedAt, time.Now())
		},
	})
	stop := runLoop(t, l)
	defer stop()

	returned := make(chan time.Time, 1)
	for i := 0; i < 20; i++ {
		l.Post(func() {}) // fast callbacks are not stalls
	}
	l.Post(func() {
		l.Annotate("GET /slow (request 42)")
		sleepyHandler(400 * time.Millisecond)
		returned <- time.Now()
	})
	end := <-returned
	// The final report is made on the loop right after the callback.
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(stalls)
		done := n > 0 && stalls[n-1].Done
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no final stall report")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	first, last := stalls[0], stalls[len(stalls)-1]
	if first.Done || !reportedAt[0].Before(end) {
		t.Fatalf("first report %+v came after the callback returned", first)
	}
	if first.Label != "GET /slow (request 42)" || !strings.Contains(first.Culprit, "sleepyHandler → time.Sleep") {
		t.Errorf("first report names %q at %q; want the label and sleepyHandler → time.Sleep", first.Label, first.Culprit)
	}
	if first.Duration < 50*time.Millisecond {
		t.Errorf("first report after %v, before the threshold", first.Duration)
	}
	// 400ms with a 150ms repeat: the first warning, one or two updates, the end.
	if n := len(stalls); n < 3 || n > 5 {
		t.Errorf("%d reports for one 400ms stall, want 3 to 5: %+v", n, stalls)
	}
	if last.Duration < 400*time.Millisecond || last.Label != "GET /slow (request 42)" {
		t.Errorf("final report %+v, want ≥400ms with the label", last)
	}
	for _, s := range stalls[:len(stalls)-1] {
		if s.Done {
			t.Errorf("more than one final report: %+v", stalls)
		}
	}
}

func TestCulpritKeepsProjectFramesAndTheBlockingCall(t *testing.T) {
	stack := `goroutine 7 [select]:
net/http.(*Transport).roundTrip(0xc000, 0xc001)
	/usr/local/go/src/net/http/transport.go:700 +0x1
net/http.(*Client).Do(...)
	/usr/local/go/src/net/http/client.go:590
demo/worker.(*app).blockingGet(0xc0002, {0x9, 0x1})
	/work/main/worker/app.go:190 +0x2
demo/worker.(*app).mixed(0xc0003, 0xc0004, 0xc0005)
	/work/main/worker/app.go:130 +0x3
demo/eventloop.(*Loop).call(0xc0006, 0xc0007)
	/work/main/eventloop/loop.go:120 +0x4
demo/eventloop.(*Loop).Run(0xc0006)
	/work/main/eventloop/loop.go:100 +0x4
demo/worker.Run({0x1})
	/work/main/worker/worker.go:200 +0x4
created by demo/worker.Run in goroutine 1
	/work/main/worker/worker.go:150 +0x5`
	got := culpritOf(stack, "demo/")
	want := "worker.(*app).mixed → worker.(*app).blockingGet → net/http.(*Client).Do"
	if got != want {
		t.Errorf("culprit %q, want %q", got, want)
	}
}
