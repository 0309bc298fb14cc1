package eventloop

import (
	"testing"
	"time"
)

// runLoop runs l on its own goroutine and returns a function that stops it
// (through Post, as any outside goroutine must) and waits for Run to return.
func runLoop(t *testing.T, l *Loop) (stop func()) {
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

func TestPostRunsOnLoopInOrder(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	stop := runLoop(t, l)
	defer stop()
	got := make(chan int, 100)
	for i := 0; i < 100; i++ {
		l.Post(func() { got <- i })
	}
	for i := 0; i < 100; i++ {
		if v := <-got; v != i {
			t.Fatalf("posted callback %d ran as %d", i, v)
		}
	}
}

func TestTimersFireInOrderAndStop(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	stop := runLoop(t, l)
	defer stop()
	got := make(chan string, 3)
	l.Post(func() {
		l.AfterFunc(60*time.Millisecond, func() { got <- "late" })
		cancelled := l.AfterFunc(30*time.Millisecond, func() { got <- "cancelled" })
		l.AfterFunc(10*time.Millisecond, func() { got <- "early" })
		if !l.StopTimer(cancelled) {
			t.Error("StopTimer on a pending timer reported false")
		}
	})
	start := time.Now()
	if a, b := <-got, <-got; a != "early" || b != "late" {
		t.Fatalf("timers fired as %q, %q; want early, late", a, b)
	}
	if el := time.Since(start); el < 60*time.Millisecond {
		t.Fatalf("60ms timer fired after %v", el)
	}
}

func TestGoIsWaitedForByClose(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	stop := runLoop(t, l)
	exited := make(chan struct{})
	l.Go(func() {
		<-l.Context().Done()
		close(exited)
	})
	stop()
	select {
	case <-exited:
	default:
		t.Fatal("Close returned before an owned goroutine finished")
	}
}
