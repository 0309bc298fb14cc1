package eventloop

import (
	"bytes"
	"path"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Stall describes a callback that has held the loop too long: what asyncio's
// debug mode reports as "Executing <Task ...> took 20.010 seconds", but said
// while the loop is still blocked, with the call that blocks it.
type Stall struct {
	Label    string        // the callback's Annotate label, "" if it set none
	Duration time.Duration // blocked so far, or in total once Done
	Culprit  string        // while blocked: the loop goroutine's project frames and the call they are in, outermost first
	Done     bool          // the callback has returned; Duration is final
}

// WatchConfig configures Watch.
type WatchConfig struct {
	Threshold time.Duration // a callback running longer is a stall; asyncio's slow_callback_duration is 100ms
	Repeat    time.Duration // while a stall lasts, report again at most this often (default 5s)
	// Report receives each stall: once at Threshold and every Repeat after
	// (from the watchdog goroutine, while the loop is still blocked), and
	// once when it ends (from the loop goroutine, with Done set).
	Report func(Stall)
}

// Watch starts a watchdog beside the loop that notices callbacks running
// longer than cfg.Threshold. Call it before Run. The bookkeeping on the
// loop is a clock read and a few atomic operations per callback; the stack
// is only read once a stall is found. While the loop waits for events the
// watchdog sleeps: an idle worker's watchdog costs nothing.
func (l *Loop) Watch(cfg WatchConfig) {
	if cfg.Repeat <= 0 {
		cfg.Repeat = 5 * time.Second
	}
	w := &watchdog{loop: l, cfg: cfg, wake: make(chan struct{}, 1), ended: make(chan struct{}, 1),
		// A second in the past, so that no reading is 0 (none running).
		epoch: time.Now().Add(-time.Second)}
	l.watchdog = w
	l.Go(w.run)
}

// The watchdog does not poll. It reads which callback runs and since when,
// and sleeps until that one would have run for the threshold: a callback
// that ends before then costs it nothing, and a stall is reported the
// moment it reaches the threshold. Finding no callback running, it parks,
// and the next callback to begin wakes it — the only time the loop itself
// does more than store a word and load another, at most once per
// threshold however busy the loop is, since the watchdog parks again at
// once only after a park of a threshold or more.
type watchdog struct {
	loop  *Loop
	cfg   WatchConfig
	epoch time.Time     // the origin of start and lastEnd, monotonic
	start atomic.Int64  // when the running callback began (see mono); 0 between callbacks
	seq   atomic.Uint64 // counts callbacks, so the watchdog can tell one stall from the next
	// parked is set by the watchdog before it waits on wake, and cleared
	// by whoever clears it first: the loop, which then sends the one
	// wake-up, or the watchdog itself, having seen a callback begin.
	parked atomic.Bool
	wake   chan struct{} // capacity 1: the loop never waits on it
	// ended tells a watchdog waiting for a stall's next reminder that the
	// stall is over, so that it watches the callback after it. Capacity 1;
	// a stale token costs one look.
	ended chan struct{}

	lastEnd int64 // loop goroutine only: when the previous callback ended (see mono)

	wakeups atomic.Uint64 // times the watchdog woke up (a test reads it)
}

// begin and end bracket every callback (loop goroutine). They read the
// clock once per callback, at its end: a callback begins when
// the one before it ended or, first after epoll_wait, when that returned
// (the loop's Now) — the loop does next to nothing in between, and a
// second clock read per callback was a measurable share of a short
// request (docs/performance.md, optimisation 8).
func (w *watchdog) begin() {
	w.seq.Add(1)
	w.start.Store(max(w.lastEnd, int64(w.loop.now.Sub(w.epoch))))
	// Stored start, then loaded parked; park stores parked, then loads
	// start: one of the two sees the other, so a callback never runs
	// unwatched (sync/atomic is sequentially consistent).
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		w.wake <- struct{}{}
	}
}

func (w *watchdog) end() {
	now := w.mono()
	w.lastEnd = now
	d := time.Duration(now - w.start.Swap(0))
	if d >= w.cfg.Threshold {
		w.cfg.Report(Stall{Label: w.loop.Label(), Duration: d, Done: true})
		select {
		case w.ended <- struct{}{}:
		default: // one is pending already
		}
	}
}

// mono reads the monotonic clock alone, in nanoseconds since epoch: half
// of time.Now, which reads the wall clock too, and a stall's length is
// not moved by a step of the wall clock.
func (w *watchdog) mono() int64 { return int64(time.Since(w.epoch)) }

// running returns the running callback's number and start, consistent
// with each other; start is 0 when none runs.
func (w *watchdog) running() (seq uint64, start int64) {
	for {
		seq = w.seq.Load()
		start = w.start.Load()
		if w.seq.Load() == seq {
			return seq, start
		}
	}
}

// run sleeps until the running callback reaches the threshold (or, once
// reported, until the next reminder is due or the stall ends), and while
// none runs, until one begins.
func (w *watchdog) run() {
	done := w.loop.Context().Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var warned uint64 // seq of the stall last reported
	var lastReport time.Time
	// hold: the watchdog was parked for less than a threshold. Finding
	// the loop idle then, it waits a threshold before it parks again: a
	// loop that waits briefly for events between short callbacks would
	// otherwise have to wake it nearly every time. After a longer park
	// (an idle worker's heartbeat) it parks again at once.
	hold := false
	for {
		now := time.Now() // before the look: a callback that begins after it is due after now+Threshold
		seq, start := w.running()
		var due time.Time
		switch {
		case start != 0 && seq == warned:
			due = lastReport.Add(w.cfg.Repeat)
		case start != 0:
			due = w.epoch.Add(time.Duration(start) + w.cfg.Threshold)
		case hold:
			due = now.Add(w.cfg.Threshold)
		default:
			if !w.park() {
				return
			}
			hold = time.Since(now) < w.cfg.Threshold
			continue
		}
		hold = false
		if wait := due.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-done:
				return
			case <-timer.C:
				w.wakeups.Add(1)
			case <-w.ended:
				w.wakeups.Add(1)
				timer.Stop()
			}
			continue // the callback may have ended meanwhile: look again
		}
		label, culprit := w.loop.Label(), ""
		if seq != warned {
			culprit = culpritOf(goroutineStack(w.loop.gid.Load()), projectPrefix, loopPrefix)
		}
		if s, st := w.running(); s != seq || st != start {
			// It ended while we looked (a watchdog kept off the CPU):
			// the label and stack may be another's, and its end reports it.
			continue
		}
		warned, lastReport = seq, now
		w.cfg.Report(Stall{Label: label, Duration: now.Sub(w.epoch.Add(time.Duration(start))), Culprit: culprit})
	}
}

// park waits until a callback begins; false means the loop is closed.
func (w *watchdog) park() bool {
	w.parked.Store(true)
	if w.start.Load() != 0 {
		// A callback began after running looked, maybe before parked was
		// set: look again instead, unless the loop already took the wake-up.
		if w.parked.CompareAndSwap(true, false) {
			return true
		}
	}
	select {
	case <-w.loop.Context().Done():
		return false
	case <-w.wake:
		w.wakeups.Add(1)
		return true
	}
}

// goroutineID parses the calling goroutine's id from its stack header,
// "goroutine 18 [running]:". Go hides ids on purpose; the watchdog needs one
// only to find the loop's stack among all the others.
func goroutineID() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		id, _ := strconv.ParseInt(string(b[:i]), 10, 64)
		return id
	}
	return 0
}

// goroutineStack returns the stack of goroutine gid, or "" if it is gone.
// runtime.Stack(all) stops the world briefly: called once per stall only.
func goroutineStack(gid int64) string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	header := "goroutine " + strconv.FormatInt(gid, 10) + " ["
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, header) {
			return g
		}
	}
	return ""
}

// The watchdog tells the project's frames from others, and the loop's own
// machinery from both, by the names the runtime prints, found at run time
// so that packages can move: loopPrefix is this package's import path
// ("demo/eventloop."), projectPrefix the path of the module it belongs to
// ("demo/").
var (
	loopPrefix    = thisPackage() + "."
	projectPrefix = moduleOf(thisPackage()) + "/"
)

// thisPackage returns this package's import path, from the name of one of
// its functions ("demo/eventloop.thisPackage").
func thisPackage() string {
	pc, _, _, _ := runtime.Caller(0)
	fn := runtime.FuncForPC(pc).Name()
	slash := strings.LastIndexByte(fn, '/')
	return fn[:slash+1+strings.IndexByte(fn[slash+1:], '.')]
}

// moduleOf returns the path of the module that holds package pkg, by the
// binary's build information; without it, pkg's parent directory.
func moduleOf(pkg string) string {
	mod := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
			if m.Path != "" && len(m.Path) > len(mod) && (pkg == m.Path || strings.HasPrefix(pkg, m.Path+"/")) {
				mod = m.Path
			}
		}
	}
	if mod == "" {
		mod = path.Dir(pkg)
	}
	return mod
}

// culpritOf reduces a goroutine's stack to the project's own frames, those
// whose function starts with project, but not the loop's machinery (loop,
// this package's prefix, and the packages below it such as the client),
// and the call the innermost of them is blocked in:
// "worker.(*app).mixed → worker.(*app).blockingGet → net/http.(*Client).Do".
func culpritOf(stack, project, loop string) string {
	var funcs []string // innermost first, as the runtime prints them
	lines := strings.Split(stack, "\n")
	for i := 1; i < len(lines); i++ {
		fn := lines[i]
		if fn == "" || strings.HasPrefix(fn, "\t") || strings.HasPrefix(fn, "created by ") {
			continue
		}
		if j := strings.LastIndexByte(fn, '('); j > 0 {
			fn = fn[:j] // drop the argument list
		}
		funcs = append(funcs, fn)
	}
	// The chain starts below the innermost loop machinery frame — the loop,
	// its server, or its client delivering a response: what ran the loop
	// (worker.Run) is not what blocks it.
	var chain []string // outermost first
	innermost := -1
	for i := len(funcs) - 1; i >= 0; i-- {
		switch {
		case strings.HasPrefix(funcs[i], loop) || strings.HasPrefix(funcs[i], strings.TrimSuffix(loop, ".")+"/"):
			chain, innermost = chain[:0], -1
		case strings.HasPrefix(funcs[i], project):
			chain = append(chain, strings.TrimPrefix(funcs[i], project))
			innermost = i
		}
	}
	if innermost > 0 {
		chain = append(chain, strings.TrimPrefix(funcs[innermost-1], project))
	}
	return strings.Join(chain, " → ")
}
