// Package eventloop is the single-goroutine reactor a worker runs, the Go
// twin of an asyncio loop: it waits for readiness with epoll, fires timers,
// and runs completions that other goroutines post to it through an eventfd.
// Everything registered with a Loop runs on the goroutine that called Run, one
// callback at a time, so a callback that blocks stalls the whole loop — on
// purpose, since that is what the project demonstrates.
//
// On top of the loop sit an HTTP/1.1 server and, in package
// eventloop/client, a non-blocking HTTP client; neither starts a goroutine
// per connection. The server is server.go (configuration, accepting,
// shutdown), conn.go (each connection's state machine), framing.go
// (finding and checking requests in the bytes read), response.go (writing
// answers) and deadlines.go (the keep-alive, header and linger clocks).
package eventloop

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Readiness events, re-exported so callers need not import x/sys/unix.
const (
	EventRead   = unix.EPOLLIN
	EventWrite  = unix.EPOLLOUT
	EventHangup = unix.EPOLLRDHUP | unix.EPOLLHUP
	EventError  = unix.EPOLLERR
)

// maxEvents bounds the readiness events one iteration takes from epoll. A
// small batch costs nothing when few fds are ready; when thousands are (a
// burst), it means the urgent set and the timers get a turn every maxEvents
// callbacks instead of once per pass over the whole burst.
const maxEvents = 64

// yieldEvery is how often a busy loop hands its thread to the Go scheduler
// for a moment (runtime.Gosched). The loop goroutine never leaves its
// thread, so to the runtime's monitor (sysmon) it looks like one that ran
// too long: every 10 ms (forcePreemptNS) it takes the loop's P away, while
// the loop sits in a system call, and after each time it goes back to
// watching every 20 µs. Under load that monitor thread cost as much as a
// tenth of what the loop itself spent. Yielding a little more often than
// that keeps the monitor asleep, and changes nothing else: the loop was
// preempted at that rate anyway, involuntarily.
const yieldEvery = 8 * time.Millisecond

// Loop is a single-goroutine reactor. Only Post, Go and Context may be called
// from other goroutines; every other method belongs to the loop goroutine.
//
// Besides the main epoll set there is a small urgent one (AddUrgent), itself
// registered in the main set: epoll hands out ready fds first come, first
// served, so when thousands are ready a fd that becomes ready now waits
// behind all of them. While the loop is backlogged it polls the urgent set
// after every batch, so a listener, and the connections it accepts then,
// are served within one batch.
type Loop struct {
	epfd     int
	urgentFD int // epoll set polled after every full batch
	wakeFD   int // eventfd: Post writes to it so a sleeping epoll_wait returns

	// fds holds the registrations by descriptor number: the kernel hands
	// out the lowest free number, so the slice stays as long as the most
	// descriptors open at once, and a lookup per event is an index.
	fds    []*registration
	gen    uint32 // bumped per registration so a stale event for a reused fd is dropped
	timers timerHeap
	now    time.Time
	stop   bool
	// yielded is when the loop last yielded to the Go scheduler.
	yielded time.Time

	backlogged   bool // the last epoll_wait filled its batch: more is ready
	urgentPolled bool // the urgent set was polled in this iteration
	urgentEvents []unix.EpollEvent

	mu     sync.Mutex
	closed bool // set by Close: a late Post must not write to a reused fd number
	posted []func()
	spare  []func() // the other half of a double buffer, to avoid allocating per wakeup

	ctx    context.Context // cancelled by Close: tells owned goroutines to give up
	cancel context.CancelFunc
	wg     sync.WaitGroup // owned goroutines started with Go

	watchdog *watchdog // installed by Watch to bracket every callback; nil without one

	gid   atomic.Int64           // the loop goroutine's id, for reading its stack
	label atomic.Pointer[string] // what the current callback is doing (Annotate)
}

type registration struct {
	fd      int
	gen     uint32
	urgent  bool // in the urgent set rather than the main one
	handler func(events uint32)
}

// New creates a loop. Call Run on the goroutine that should own it.
func New() (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakeFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	urgentFD, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		unix.Close(wakeFD)
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{epfd: epfd, urgentFD: urgentFD, wakeFD: wakeFD, now: time.Now(), ctx: ctx, cancel: cancel,
		urgentEvents: make([]unix.EpollEvent, maxEvents)}
	// Run dispatches wakeFD (drainPosted) and urgentFD (pollUrgent) itself;
	// their handlers are never called.
	for _, fd := range []int{wakeFD, urgentFD} {
		if err := l.Add(fd, EventRead, func(uint32) {}); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Run runs the loop on the calling goroutine, locked to its OS thread, until
// Stop is called from a callback. It returns nil after Stop, or the error that
// made epoll unusable.
func (l *Loop) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.gid.Store(goroutineID())
	events := make([]unix.EpollEvent, maxEvents)
	l.stop = false
	for !l.stop {
		n, err := unix.EpollWait(l.epfd, events, l.waitMillis())
		l.now = time.Now()
		if l.now.Sub(l.yielded) >= yieldEvery {
			l.yielded = l.now
			runtime.Gosched()
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		l.backlogged = n == len(events)
		l.urgentPolled = false
		l.dispatch(events[:n])
		if l.backlogged && !l.urgentPolled {
			// The urgent set may be far down epoll's ready list.
			l.pollUrgent()
		}
		l.runTimers()
	}
	return nil
}

// dispatch runs the handlers of a batch of readiness events.
func (l *Loop) dispatch(events []unix.EpollEvent) {
	for i := range events {
		ev := &events[i]
		reg := l.reg(int(ev.Fd))
		if reg == nil || reg.gen != uint32(ev.Pad) {
			continue // closed (and maybe reused) by an earlier callback in this batch
		}
		switch reg.fd {
		case l.wakeFD:
			l.drainPosted() // each posted callback is a step of its own
		case l.urgentFD:
			l.pollUrgent()
		default:
			l.callHandler(reg.handler, ev.Events)
		}
	}
}

// pollUrgent handles what is ready in the urgent set, without waiting.
func (l *Loop) pollUrgent() {
	l.urgentPolled = true
	n, err := unix.EpollWait(l.urgentFD, l.urgentEvents, 0)
	if err != nil || n <= 0 {
		return // EINTR: the main set reports the urgent one again
	}
	l.dispatch(l.urgentEvents[:n])
}

// Backlogged reports whether the loop's last epoll_wait returned a full
// batch: more fds are ready than one iteration takes, so a fd registered in
// the main set now would wait behind them. A server registers connections it
// accepts at such a time with AddUrgent.
func (l *Loop) Backlogged() bool { return l.backlogged }

// call runs one callback, bracketed by the watchdog when there is one.
// Nothing above Run recovers a panic, so none has to be allowed for here.
func (l *Loop) call(fn func()) {
	l.enter()
	fn()
	l.leave()
}

// callHandler is call for a readiness handler: no closure per event.
func (l *Loop) callHandler(h func(events uint32), events uint32) {
	l.enter()
	h(events)
	l.leave()
}

// enter and leave bracket every callback.
func (l *Loop) enter() {
	if w := l.watchdog; w != nil {
		w.begin()
	}
}

func (l *Loop) leave() {
	if w := l.watchdog; w != nil {
		w.end()
	}
	// The callback's label, if it set one, ends; a load is cheaper than a store.
	if l.label.Load() != nil {
		l.label.Store(nil)
	}
}

// Annotate says what the running callback is doing, e.g.
// "GET / (request 9631c187-...)", so a stall report can name its culprit.
// The label lasts until the callback returns.
func (l *Loop) Annotate(label string) { l.label.Store(&label) }

// AnnotateWith is Annotate with a label kept by the caller (*label must not
// change): no allocation, for what every request of a route says.
func (l *Loop) AnnotateWith(label *string) { l.label.Store(label) }

// Label returns the running callback's Annotate label, or "".
func (l *Loop) Label() string {
	if p := l.label.Load(); p != nil {
		return *p
	}
	return ""
}

// Stop makes Run return after the current iteration.
func (l *Loop) Stop() { l.stop = true }

// Now is the time the loop last woke up: cheap, and the same for every
// callback of one iteration, like asyncio's loop.time().
func (l *Loop) Now() time.Time { return l.now }

// Context is cancelled when the loop is closed; goroutines started with Go
// should return when it is done.
func (l *Loop) Context() context.Context { return l.ctx }

// Close cancels Context, waits for every goroutine started with Go, and
// releases the epoll and eventfd descriptors. Call it after Run returned.
// Registered fds are not closed: their owners close them.
func (l *Loop) Close() error {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return errors.Join(unix.Close(l.wakeFD), unix.Close(l.urgentFD), unix.Close(l.epfd))
}

// Add registers fd for events; handler runs on the loop with the events that
// fired.
func (l *Loop) Add(fd int, events uint32, handler func(events uint32)) error {
	return l.add(fd, events, handler, false)
}

// AddUrgent is Add into the urgent set: while the loop is backlogged, fd's
// events are handled after every batch instead of waiting their turn behind
// every other ready fd. Keep the set small — a listener, a connection that
// has not been answered yet — or it is just a second queue.
func (l *Loop) AddUrgent(fd int, events uint32, handler func(events uint32)) error {
	return l.add(fd, events, handler, true)
}

func (l *Loop) add(fd int, events uint32, handler func(events uint32), urgent bool) error {
	l.gen++
	reg := &registration{fd: fd, gen: l.gen, urgent: urgent, handler: handler}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(reg.gen)}
	if err := epollCtl(l.set(urgent), unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll add fd %d: %w", fd, err)
	}
	if fd >= len(l.fds) {
		l.fds = append(l.fds, make([]*registration, fd+1-len(l.fds))...)
	}
	l.fds[fd] = reg
	return nil
}

// reg returns fd's registration, or nil.
func (l *Loop) reg(fd int) *registration {
	if uint(fd) < uint(len(l.fds)) {
		return l.fds[fd]
	}
	return nil
}

func (l *Loop) set(urgent bool) int {
	if urgent {
		return l.urgentFD
	}
	return l.epfd
}

// Modify changes the events fd is registered for.
func (l *Loop) Modify(fd int, events uint32) error {
	reg := l.reg(fd)
	if reg == nil {
		return fmt.Errorf("epoll modify fd %d: not registered", fd)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(reg.gen)}
	if err := epollCtl(l.set(reg.urgent), unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("epoll modify fd %d: %w", fd, err)
	}
	return nil
}

// Demote moves fd from the urgent set to the main one, registered for
// events; it does nothing to a fd already in the main set.
func (l *Loop) Demote(fd int, events uint32) error {
	reg := l.reg(fd)
	if reg == nil {
		return fmt.Errorf("epoll demote fd %d: not registered", fd)
	}
	if !reg.urgent {
		return nil
	}
	if err := epollCtl(l.urgentFD, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("epoll demote fd %d: %w", fd, err)
	}
	reg.urgent = false
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(reg.gen)}
	if err := epollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.fds[fd] = nil // in neither set now
		return fmt.Errorf("epoll demote fd %d: %w", fd, err)
	}
	return nil
}

// Remove unregisters fd. Call it before closing fd.
func (l *Loop) Remove(fd int) error {
	reg := l.reg(fd)
	if reg == nil {
		return nil
	}
	l.fds[fd] = nil
	if err := epollCtl(l.set(reg.urgent), unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("epoll remove fd %d: %w", fd, err)
	}
	return nil
}

// Discard unregisters fd and closes it, with one system call where Remove
// and a close make two: closing the last descriptor of an open socket
// takes it out of every epoll set. Should another descriptor still refer
// to the socket for a moment (a child between fork and exec), its events
// carry the old registration's number, which the loop drops. The error is
// close's.
func (l *Loop) Discard(fd int) error {
	if reg := l.reg(fd); reg != nil {
		l.fds[fd] = nil
	}
	if err := rawClose(fd); err != nil {
		return fmt.Errorf("close fd %d: %w", fd, err)
	}
	return nil
}

// Post queues fn to run on the loop goroutine and wakes the loop. It is the
// only way other goroutines may hand results to the loop. Safe from any
// goroutine.
func (l *Loop) Post(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return // nobody is left to run it
	}
	wake := len(l.posted) == 0 // a non-empty queue already has a wakeup pending
	l.posted = append(l.posted, fn)
	if wake {
		var one = [8]byte{1}
		// EAGAIN means the counter is saturated: the loop is awake anyway.
		_, _ = unix.Write(l.wakeFD, one[:])
	}
}

// Go runs fn on a new goroutine owned by the loop: Close waits for it, and
// fn should return once Context is done.
func (l *Loop) Go(fn func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn()
	}()
}

func (l *Loop) drainPosted() {
	var buf [8]byte
	// Reset the counter before taking the queue, so a Post that lands after
	// the swap always leaves a fresh wakeup behind.
	_, _ = unix.Read(l.wakeFD, buf[:])
	l.mu.Lock()
	batch := l.posted
	l.posted = l.spare[:0]
	l.mu.Unlock()
	for i, fn := range batch {
		batch[i] = nil
		l.call(fn)
	}
	l.mu.Lock()
	l.spare = batch[:0]
	l.mu.Unlock()
}

// Timer is a callback scheduled on the loop.
type Timer struct {
	when  time.Time
	fn    func()
	index int // position in the heap, -1 once fired or stopped
}

// AfterFunc runs fn on the loop once d has elapsed.
func (l *Loop) AfterFunc(d time.Duration, fn func()) *Timer {
	t := &Timer{when: time.Now().Add(d), fn: fn}
	heap.Push(&l.timers, t)
	return t
}

// StopTimer cancels t; it reports whether t had not fired yet.
func (l *Loop) StopTimer(t *Timer) bool {
	if t == nil || t.index < 0 {
		return false
	}
	heap.Remove(&l.timers, t.index)
	return true
}

func (l *Loop) runTimers() {
	for len(l.timers) > 0 && !l.timers[0].when.After(l.now) {
		t := heap.Pop(&l.timers).(*Timer)
		l.call(t.fn)
	}
}

// waitMillis is how long epoll_wait may sleep: until the next timer, rounded
// up so a timer never fires early, or forever when there is none.
func (l *Loop) waitMillis() int {
	if len(l.timers) == 0 {
		return -1
	}
	d := time.Until(l.timers[0].when)
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

type timerHeap []*Timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
