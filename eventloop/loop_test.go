package eventloop

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestUrgentSetIsServedWithinABatch keeps a thousand fds ready and then, from
// a loop callback, makes one fd of each set ready: the urgent one runs
// within a batch or two, the ordinary one only after every fd ahead of it in
// epoll's ready list. Once demoted, the urgent one waits its turn too.
func TestUrgentSetIsServedWithinABatch(t *testing.T) {
	const busyFDs = 1000
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	stop := runLoop(t, l)
	var calls int // loop goroutine only
	var fds []int
	newEventfd := func() int {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		return fd
	}
	defer func() {
		stop()
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	busy := make([]int, busyFDs)
	for i := range busy {
		busy[i] = newEventfd()
	}
	urgent, ordinary := newEventfd(), newEventfd()
	type result struct {
		urgent, ordinary int  // callbacks between the wakeup and each handler
		backlogged       bool // as seen by the urgent handler
	}
	results := make(chan result, 2)
	var start int
	var res result
	seen := 0
	done := func() {
		if seen++; seen == 2 {
			results <- res
			seen = 0
		}
	}
	drain := func(fd int) {
		var b [8]byte
		_, _ = unix.Read(fd, b[:])
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	registered := make(chan error, 1)
	l.Post(func() {
		for _, fd := range busy {
			if _, err := unix.Write(fd, one); err != nil { // readable until closed
				registered <- err
				return
			}
			if err := l.Add(fd, EventRead, func(uint32) { calls++ }); err != nil {
				registered <- err
				return
			}
		}
		err := l.AddUrgent(urgent, EventRead, func(uint32) {
			drain(urgent)
			res.urgent, res.backlogged = calls-start, l.Backlogged()
			done()
		})
		if err == nil {
			err = l.Add(ordinary, EventRead, func(uint32) {
				drain(ordinary)
				res.ordinary = calls - start
				done()
			})
		}
		registered <- err
	})
	if err := <-registered; err != nil {
		t.Fatal(err)
	}
	wake := func() {
		l.Post(func() {
			start = calls
			_, _ = unix.Write(urgent, one)
			_, _ = unix.Write(ordinary, one)
		})
	}
	wake()
	r := <-results
	if !r.backlogged {
		t.Error("Backlogged() is false with a thousand fds ready")
	}
	if r.urgent > 2*maxEvents {
		t.Errorf("the urgent fd waited for %d callbacks, want at most %d (two batches)", r.urgent, 2*maxEvents)
	}
	if r.ordinary < busyFDs/2 {
		t.Errorf("the ordinary fd waited for %d callbacks only; the test has no backlog to show", r.ordinary)
	}

	// Demoted, the formerly urgent fd queues like any other.
	demoted := make(chan error, 1)
	l.Post(func() { demoted <- l.Demote(urgent, EventRead) })
	if err := <-demoted; err != nil {
		t.Fatal(err)
	}
	wake()
	if r := <-results; r.urgent < busyFDs/2 {
		t.Errorf("after Demote the fd waited for %d callbacks only, want it behind the ready fds", r.urgent)
	}
}

// TestAnnotateWithKeepsTheCallersLabel: a route's label is made once, and
// annotating a request with it allocates nothing.
func TestAnnotateWithKeepsTheCallersLabel(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	label := "GET /healthcheck"
	if allocs := testing.AllocsPerRun(100, func() { l.AnnotateWith(&label) }); allocs != 0 {
		t.Errorf("AnnotateWith: %v allocations, want 0", allocs)
	}
	if got := l.Label(); got != label {
		t.Errorf("Label %q, want %q", got, label)
	}
}
