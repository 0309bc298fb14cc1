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
// loop is a clock read and a few atomic stores per callback; the stack
// is only read once a stall is found.
func (l *Loop) Watch(cfg WatchConfig) {
	if cfg.Repeat <= 0 {
		cfg.Repeat = 5 * time.Second
	}
	w := &watchdog{loop: l, cfg: cfg}
	l.Step = w.step
	l.Go(w.run)
}

type watchdog struct {
	loop  *Loop
	cfg   WatchConfig
	start atomic.Int64  // Unix nanoseconds the running callback began; 0 between callbacks
	seq   atomic.Uint64 // counts callbacks, so the watchdog can tell one stall from the next

	lastEnd int64 // loop goroutine only: when the previous callback ended
}

// step brackets every callback (the Loop's Step hook, loop goroutine). It
// reads the clock once per callback, at its end: a callback begins when
// the one before it ended or, first after epoll_wait, when that returned
// (the loop's Now) — the loop does next to nothing in between, and a
// second clock read per callback was a measurable share of a short
// request (docs/performance.md, optimisation 8).
func (w *watchdog) step(begin bool) {
	if begin {
		w.seq.Add(1)
		w.start.Store(max(w.lastEnd, w.loop.now.UnixNano()))
		return
	}
	now := time.Now().UnixNano()
	w.lastEnd = now
	d := time.Duration(now - w.start.Swap(0))
	if d >= w.cfg.Threshold {
		w.cfg.Report(Stall{Label: w.loop.Label(), Duration: d, Done: true})
	}
}

// run polls the running callback's age a few times per threshold.
func (w *watchdog) run() {
	tick := time.NewTicker(max(w.cfg.Threshold/4, time.Millisecond))
	defer tick.Stop()
	var warned uint64 // seq of the stall last reported
	var lastReport time.Time
	for {
		select {
		case <-w.loop.Context().Done():
			return
		case now := <-tick.C:
			seq := w.seq.Load()
			start := w.start.Load()
			if start == 0 || w.seq.Load() != seq {
				continue // idle, or a new callback began while we looked
			}
			d := now.Sub(time.Unix(0, start))
			if d < w.cfg.Threshold || (seq == warned && now.Sub(lastReport) < w.cfg.Repeat) {
				continue
			}
			culprit := ""
			if seq != warned {
				culprit = culpritOf(goroutineStack(w.loop.gid.Load()), projectPrefix, loopPrefix)
			}
			warned, lastReport = seq, now
			w.cfg.Report(Stall{Label: w.loop.Label(), Duration: d, Culprit: culprit})
		}
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
