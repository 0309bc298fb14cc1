package eventloop_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"demo/eventloop"
)

// This file is a package of its own so that, as in a worker, the frames
// of the code the loop runs are not the loop's own: the watchdog tells
// them apart by package.

func runLoop(t *testing.T, l *eventloop.Loop) (stop func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	return func() {
		l.Post(l.Stop)
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// sleepyHandler stands for a handler that makes a blocking call.
func sleepyHandler(d time.Duration) { time.Sleep(d) }

func TestWatchReportsAStallWhileItLastsAndOnceWhenItEnds(t *testing.T) {
	l, err := eventloop.New()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stalls []eventloop.Stall
	var reportedAt []time.Time
	l.Watch(eventloop.WatchConfig{
		Threshold: 50 * time.Millisecond,
		Repeat:    150 * time.Millisecond,
		Report: func(s eventloop.Stall) {
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
