package logs

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of a Sink's bounds.
const (
	// DefaultLimit is how many bytes a Sink holds for a reader that does
	// not keep up before it drops lines: a few seconds of a worker's
	// access log at full speed.
	DefaultLimit = 1 << 20

	// syncPatience and syncMax bound Sync: it waits while the writer makes
	// progress, but gives up once no byte went out for syncPatience (at
	// once if the writer is already stuck that long), and after syncMax
	// in any case. Sync runs on a worker's event loop.
	syncPatience = 50 * time.Millisecond
	syncMax      = 250 * time.Millisecond

	// closePatience and closeMax bound Close, at exit: everything goes out
	// while the reader reads, even slowly, but a reader that stopped
	// reading (a paused pager) holds the exit for closePatience at most.
	closePatience = 500 * time.Millisecond
	closeMax      = 5 * time.Second

	// maxKeep: a buffer that grew beyond this during a burst is dropped
	// after use rather than pinned for the life of the process.
	maxKeep = 4 * DefaultLimit
)

// Sink is where a process's log lines go: any goroutine may Write, and
// Write never waits for the reader. Lines are held in memory and written
// out by a goroutine of the Sink's own, at most Batch after the first of
// them — so an event loop that logs every request pays an append per line,
// not a write(2). When the reader does not keep up (`demo serve | less`
// paused, a stalled log collector) and Limit bytes are waiting, further
// lines are dropped and counted (Dropped) instead of stopping the process;
// once the reader caught up, the count is reported through Report. When
// the reader is gone (EPIPE, a terminal that hung up), logging stops for
// the process and the process goes on.
//
// Sync and Close wait for the writer, bounded (see syncPatience and
// closePatience). Sink satisfies zapcore.WriteSyncer; its Write never
// fails, so zap never falls back to writing stderr itself.
type Sink struct {
	out    *output
	batch  time.Duration
	limit  uint64
	report func(lines uint64) // set once, before the first Write

	mu         sync.Mutex
	buf        []byte        // accepted, not yet taken by the writer
	spare      []byte        // the other half of a double buffer
	accepted   uint64        // bytes accepted in all
	written    uint64        // bytes accepted that have gone out (or were lost)
	progressAt time.Time     // last write, or when bytes became pending after none were
	progress   chan struct{} // closed on progress; made by a waiter, so none is made per write while nobody waits
	lastDrop   uint64        // accepted when the last line was dropped
	unreported uint64        // lines dropped and not reported yet
	gone       bool          // the reader is gone: logging is off
	closed     bool

	dropped atomic.Uint64

	// reporting is held while report runs, so that Close, which may
	// report too, knows when a report's line is written to the Sink.
	reporting sync.Mutex

	wake chan struct{} // something to write after nothing was pending
	kick chan struct{} // Sync: do not wait out the batch delay
	stop chan struct{}
	done chan struct{} // closed when the writer goroutine returned

	closeOnce sync.Once
}

// SinkConfig tunes a Sink; zero fields take the defaults.
type SinkConfig struct {
	// Batch is how long the writer waits after a line, for more, before
	// it writes; 0 writes at once.
	Batch time.Duration
	// Limit is how many bytes may wait for the reader before lines are
	// dropped (default DefaultLimit).
	Limit int
	// Report is called, from the Sink's goroutine, once the reader has
	// caught up after lines were dropped, with how many; it typically logs
	// a line through the same Sink.
	Report func(lines uint64)
}

// NewSink starts a Sink writing to f, which stays open and untouched: the
// Sink writes to a descriptor of its own (see output). Close stops it.
func NewSink(f *os.File, cfg SinkConfig) (*Sink, error) {
	s := &Sink{
		batch:  cfg.Batch,
		limit:  uint64(cfg.Limit),
		report: cfg.Report,
		wake:   make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if s.limit == 0 {
		s.limit = DefaultLimit
	}
	out, err := openOutput(int(f.Fd()))
	if errors.Is(err, errReaderGone) {
		s.gone = true
		close(s.done)
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.out = out
	go s.run()
	return s, nil
}

// Write takes p (whole lines) to be written out, or drops it: it never
// waits and never fails.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	if !s.admitLocked(len(p)) {
		s.dropLocked(lines(p))
		return len(p), nil
	}
	start := len(s.buf)
	s.buf = append(s.buf, p...)
	s.keepLocked(start)
	return len(p), nil
}

// writeLine is Write for one line formatted in place: fill appends it
// (size bytes at most, its newline included) to the bytes held and returns
// them, with the Sink's lock held — one lock and one copy for a caller
// that would otherwise format into a buffer of its own, under a lock of
// its own, and then Write. fill must not keep its argument or call the
// Sink.
func (s *Sink) writeLine(size int, fill func(held []byte) []byte) {
	s.mu.Lock()
	if !s.admitLocked(size) {
		s.dropLocked(1)
		return
	}
	start := len(s.buf)
	s.buf = fill(s.buf)
	s.keepLocked(start)
}

// admitLocked reports whether n more bytes may be held: the reader is
// there, the Sink open and the limit not reached.
func (s *Sink) admitLocked(n int) bool {
	return !s.gone && !s.closed && s.accepted-s.written+uint64(n) <= s.limit
}

// dropLocked counts n lines as dropped, and releases mu.
func (s *Sink) dropLocked(n uint64) {
	if !s.gone && !s.closed {
		s.unreported += n
		s.lastDrop = s.accepted
	}
	s.mu.Unlock()
	s.dropped.Add(n)
}

// keepLocked accepts what was appended to buf after start, wakes the
// writer if it was idle, and releases mu.
func (s *Sink) keepLocked(start int) {
	idle := s.accepted == s.written
	if idle {
		s.progressAt = time.Now()
	}
	s.accepted += uint64(len(s.buf) - start)
	s.mu.Unlock()
	if idle {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// lines counts the lines in p, a last one without a newline included.
func lines(p []byte) uint64 {
	n := uint64(bytes.Count(p, []byte{'\n'}))
	if len(p) > 0 && p[len(p)-1] != '\n' {
		n++
	}
	return n
}

// Dropped reports how many lines were dropped in all: because the reader
// did not keep up, or because it is gone.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Sync writes out what was written so far. It waits while the writer
// makes progress, but not for a reader that stopped reading: it returns
// once no byte has gone out for a short while (at once when the writer has
// been stuck that long already), and after a fraction of a second in any
// case. Lines it could not write stay held (nothing is lost by Sync).
func (s *Sink) Sync() error {
	s.waitWritten(syncPatience, syncMax)
	return nil
}

// Close writes out what was written so far, waiting as long as the reader
// reads but not for one that stopped, then stops the Sink. Lines written
// after Close are dropped.
func (s *Sink) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.waitWritten(closePatience, closeMax)
		// Drops not reported yet (the reader caught up just now) are
		// reported before the Sink closes; taking reporting also waits
		// for a report the writer is making, whose line must go out too.
		s.reporting.Lock()
		if n := s.takeReport(); n > 0 {
			s.report(n)
		}
		s.reporting.Unlock()
		s.waitWritten(closePatience, closeMax)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if s.out == nil {
			return // the reader was gone from the start
		}
		close(s.stop)
		s.out.interrupt()
		select {
		case <-s.done:
			err = s.out.close()
		case <-time.After(closePatience):
			// A blocking write(2) nothing can interrupt (see output): the
			// descriptor stays with the goroutine, which the process's
			// exit ends.
		}
	})
	return err
}

// waitWritten waits until every byte accepted before the call has gone
// out, the writer has made no progress for patience, or max has passed.
func (s *Sink) waitWritten(patience, max time.Duration) {
	s.mu.Lock()
	target := s.accepted
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	deadline := time.Now().Add(max)
	var timer *time.Timer
	for {
		s.mu.Lock()
		if s.written >= target || s.gone || s.out == nil {
			s.mu.Unlock()
			break
		}
		end := s.progressAt.Add(patience)
		if s.progress == nil {
			s.progress = make(chan struct{})
		}
		progress := s.progress
		s.mu.Unlock()
		if deadline.Before(end) {
			end = deadline
		}
		wait := time.Until(end)
		if wait <= 0 {
			break
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-progress:
		case <-timer.C:
		}
	}
	if timer != nil {
		timer.Stop()
	}
}

// run is the writer goroutine: it writes out what is held, at most one
// batch per Batch, until Close.
func (s *Sink) run() {
	defer close(s.done)
	var timer *time.Timer
	if s.batch > 0 {
		timer = time.NewTimer(s.batch)
		timer.Stop()
	}
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
		for more := true; more; {
			if timer != nil {
				timer.Reset(s.batch)
				select {
				case <-timer.C:
				case <-s.kick:
					timer.Stop()
				case <-s.stop:
					return
				}
			}
			var ok bool
			if more, ok = s.flush(); !ok {
				return
			}
		}
	}
}

// flush writes out everything held now. It reports whether more arrived
// meanwhile, and false in ok once the writer must stop.
func (s *Sink) flush() (more, ok bool) {
	s.mu.Lock()
	out := s.buf
	s.buf, s.spare = s.spare[:0], nil
	s.mu.Unlock()

	err := s.writeAll(out)

	s.mu.Lock()
	if cap(out) <= maxKeep {
		s.spare = out[:0]
	}
	if errors.Is(err, errReaderGone) {
		// Logging is off from now on; what is held is lost.
		s.gone = true
		s.dropped.Add(lines(s.buf))
		s.buf, s.spare = nil, nil
		s.written = s.accepted
		s.unreported = 0 // counted already, and nobody to report to
		s.notifyLocked()
	}
	s.mu.Unlock()
	s.reporting.Lock()
	if n := s.takeReport(); n > 0 {
		s.report(n)
	}
	s.reporting.Unlock()
	s.mu.Lock()
	more = len(s.buf) > 0
	s.mu.Unlock()
	return more, !errors.Is(err, errStopped) && !errors.Is(err, errReaderGone)
}

// takeReport returns how many dropped lines are due for a report, once the
// reader caught up — everything held when the last line was dropped has
// gone out — and 0 otherwise (or without Report, or once closed).
func (s *Sink) takeReport() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.report == nil || s.closed || s.unreported == 0 || s.written < s.lastDrop {
		return 0
	}
	n := s.unreported
	s.unreported = 0
	return n
}

// pipeBuf is PIPE_BUF on Linux: a pipe write of at most this many bytes is
// atomic.
const pipeBuf = 4096

// errStopped: Close interrupted a write that was waiting for the reader.
var errStopped = errors.New("sink closed")

// writeAll writes p out, waiting for the reader as long as it takes (or
// until Close). Lines it cannot write are counted as dropped.
//
// To a pipe, it writes whole entries, at most PIPE_BUF bytes at a time:
// such a write is atomic, all or nothing, so the lines of the processes
// sharing the pipe (master and workers) never cut into each other, even
// when the pipe is nearly full. An entry is a line and the lines after it
// that begin with a space or a tab (a stack under its message), so a
// multi-line entry is never cut apart either. (Only an entry longer than
// PIPE_BUF can be.)
func (s *Sink) writeAll(p []byte) error {
	for off := 0; off < len(p); {
		end := len(p)
		if s.out.pipe && end-off > pipeBuf {
			end = off + entriesWithin(p[off:], pipeBuf)
		}
		n, err := s.out.write(p[off:end])
		if n > 0 {
			off += n
			s.mu.Lock()
			s.written += uint64(n)
			s.progressAt = time.Now()
			s.notifyLocked()
			s.mu.Unlock()
		}
		switch {
		case err == nil, errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			if !s.out.wait() {
				return errStopped
			}
		default:
			// Lost: the reader is gone, or this batch could not be
			// written (a full disk); the lines are dropped.
			s.dropped.Add(lines(p[off:]))
			s.mu.Lock()
			s.written += uint64(len(p) - off)
			s.notifyLocked()
			s.mu.Unlock()
			return err
		}
	}
	return nil
}

// entriesWithin returns where to end a pipe write of p, at most limit
// bytes long if it can be: after the last whole entry that fits, an entry
// ending at a newline not followed by a continuation line (one beginning
// with a space or a tab). Only an entry longer than limit on its own is
// cut, between two of its lines, as plain lines would be.
func entriesWithin(p []byte, limit int) int {
	limit = min(limit, len(p))
	for i := limit - 1; i >= 0; i-- {
		if p[i] == '\n' && (i+1 == len(p) || (p[i+1] != ' ' && p[i+1] != '\t')) {
			return i + 1
		}
	}
	if j := bytes.LastIndexByte(p[:limit], '\n'); j >= 0 {
		return j + 1
	}
	if i := bytes.IndexByte(p[limit:], '\n'); i >= 0 {
		return limit + i + 1
	}
	return len(p)
}

// notifyLocked wakes whoever waits in waitWritten. Call with mu held.
func (s *Sink) notifyLocked() {
	if s.progress != nil {
		close(s.progress)
		s.progress = nil
	}
}
