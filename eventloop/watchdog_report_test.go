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

// timedStall is a stall report and when it came.
type timedStall struct {
	eventloop.Stall
	at time.Time
}

// watchedLoop runs a loop whose watchdog reports stalls past threshold
// (reminders a minute apart) on the returned channel.
func watchedLoop(t *testing.T, threshold time.Duration) (*eventloop.Loop, <-chan timedStall, func()) {
	t.Helper()
	l, err := eventloop.New()
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan timedStall, 16)
	l.Watch(eventloop.WatchConfig{Threshold: threshold, Repeat: time.Minute, Report: func(s eventloop.Stall) {
		reports <- timedStall{s, time.Now()}
	}})
	return l, reports, runLoop(t, l)
}

// TestIdleWatchdogSleeps: while the loop waits for events its watchdog
// does not wake at all; short callbacks, each after the loop went idle,
// wake it about twice per threshold, not once per callback; and a stall
// that begins while it sleeps is still reported while the loop is blocked.
func TestIdleWatchdogSleeps(t *testing.T) {
	const threshold = 20 * time.Millisecond
	l, reports, stop := watchedLoop(t, threshold)
	defer stop()
	roundTrip := func() {
		ran := make(chan struct{})
		l.Post(func() { close(ran) })
		<-ran
	}
	waitParked := func() {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !l.WatchdogParked() {
			if time.Now().After(deadline) {
				t.Fatal("the watchdog of an idle loop did not park")
			}
			time.Sleep(time.Millisecond)
		}
	}
	roundTrip()
	waitParked()

	// Ten thresholds of idleness: polling at a quarter of the threshold
	// woke 40 times.
	before := l.WatchdogWakeups()
	time.Sleep(10 * threshold)
	if n := l.WatchdogWakeups() - before; n != 0 {
		t.Errorf("the watchdog of an idle loop woke %d times in %v", n, 10*threshold)
	}

	before = l.WatchdogWakeups()
	callbacks := 0
	start := time.Now()
	for time.Since(start) < 10*threshold {
		roundTrip()
		callbacks++
	}
	elapsed := time.Since(start)
	limit := 4*uint64(elapsed/threshold) + 4
	if n := l.WatchdogWakeups() - before; n > limit {
		t.Errorf("%d callbacks in %v woke the watchdog %d times, want at most %d", callbacks, elapsed, n, limit)
	}

	waitParked()
	returned := make(chan time.Time, 1)
	l.Post(func() {
		l.Annotate("GET /late")
		sleepyHandler(8 * threshold)
		returned <- time.Now()
	})
	first := <-reports
	end := <-returned
	if first.Done || !first.at.Before(end) {
		t.Fatalf("the first report %+v came after the callback returned", first.Stall)
	}
	if first.Label != "GET /late" || !strings.Contains(first.Culprit, "sleepyHandler → time.Sleep") || first.Duration < threshold {
		t.Errorf("first report %+v; want GET /late, sleepyHandler → time.Sleep, at least %v", first.Stall, threshold)
	}
	if last := <-reports; !last.Done || last.Duration < 8*threshold {
		t.Errorf("final report %+v, want Done after at least %v", last.Stall, 8*threshold)
	}
}

// TestWatchReportsAStallRightAfterAnother: a stall that begins just after a
// reported one ended is reported at its own threshold, not when the first
// one's reminder would have been due.
func TestWatchReportsAStallRightAfterAnother(t *testing.T) {
	const threshold = 20 * time.Millisecond
	l, reports, stop := watchedLoop(t, threshold)
	defer stop()
	returned := make(chan time.Time, 2)
	for _, label := range []string{"GET /first", "GET /second"} {
		l.Post(func() {
			l.Annotate(label)
			sleepyHandler(20 * threshold) // time for a watchdog kept off the CPU a while
			returned <- time.Now()
		})
	}
	var got []timedStall
	for len(got) < 4 {
		select {
		case r := <-reports:
			got = append(got, r)
		case <-time.After(2 * time.Second):
			t.Fatalf("%d reports for two stalls, want 4: %+v", len(got), got)
		}
	}
	firstEnd, secondEnd := <-returned, <-returned
	want := []struct {
		label string
		done  bool
		by    time.Time
	}{{"GET /first", false, firstEnd}, {"GET /first", true, secondEnd}, {"GET /second", false, secondEnd}, {"GET /second", true, time.Time{}}}
	for i, w := range want {
		r := got[i]
		if r.Label != w.label || r.Done != w.done || (!w.by.IsZero() && !r.at.Before(w.by)) {
			t.Errorf("report %d: %+v at %v; want %s, done %v, before %v", i, r.Stall, r.at, w.label, w.done, w.by)
		}
	}
}
