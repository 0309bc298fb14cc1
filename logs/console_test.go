package logs

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The console logger has two shortcuts past zap's own console encoder: the
// consoleEncoder's EncodeEntry, and consoleCore.WriteInfo, which skips zap
// altogether. Both must write exactly zap's bytes.

// zone is not UTC, so that a shortcut formatting the wrong zone shows.
var zone = time.FixedZone("CEST", 2*60*60)

// logTimes cover the cache of WriteInfo's prefix: the same millisecond
// twice, a millisecond, second, minute and year rolling over, time going
// back, and zero padding in every field.
var logTimes = []time.Time{
	time.Date(2021, 7, 7, 20, 8, 57, 962_345_678, zone),
	time.Date(2021, 7, 7, 20, 8, 57, 962_999_999, zone), // same millisecond
	time.Date(2021, 7, 7, 20, 8, 57, 963_000_000, zone),
	time.Date(2021, 7, 7, 20, 8, 57, 999_999_999, zone),
	time.Date(2021, 7, 7, 20, 8, 58, 0, zone), // next second
	time.Date(2021, 7, 7, 20, 59, 59, 999_500_000, zone),
	time.Date(2021, 7, 7, 21, 0, 0, 0, zone), // next minute and hour
	time.Date(2021, 12, 31, 23, 59, 59, 999_999_999, zone),
	time.Date(2022, 1, 1, 0, 0, 0, 500_000, zone),   // next year
	time.Date(2021, 1, 2, 3, 4, 5, 6_000_000, zone), // back in time
}

var logNames = []string{"", "worker-1[123]", "worker-12[45678]", "external"}

var logMessages = []string{
	`127.0.0.1:54321 - "GET /healthcheck HTTP/1.1" 200`,
	"9631c187-7e19-4c7a-9b7e-2ad44dfa4f3b: started processing",
	"9631c187-7e19-4c7a-9b7e-2ad44dfa4f3b 1: <Response [200 OK]>",
	"9631c187-7e19-4c7a-9b7e-2ad44dfa4f3b: finished!",
	"",
	"tab\tand ünïcode",
}

// fixedClock is the clock zap reads each entry's time from.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time                         { return c.t }
func (c *fixedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

func newTestCore(t testing.TB, level zapcore.Level, out zapcore.WriteSyncer) *consoleCore {
	t.Helper()
	core, err := newCore(Console, level, out)
	if err != nil {
		t.Fatal(err)
	}
	cc, ok := core.(*consoleCore)
	if !ok {
		t.Fatalf("console core is %T: the fast encoder failed its own check", core)
	}
	return cc
}

func TestConsoleEncoderWritesZapsBytes(t *testing.T) {
	fast := newConsoleEncoder(encoderConfig())
	if _, ok := fast.(*consoleEncoder); !ok {
		t.Fatalf("got %T: the fast encoder failed its own check", fast)
	}
	var zapOut, fastOut bytes.Buffer
	zapCore := zapcore.NewCore(zapcore.NewConsoleEncoder(encoderConfig()), zapcore.AddSync(&zapOut), TraceLevel)
	fastCore := zapcore.NewCore(fast, zapcore.AddSync(&fastOut), TraceLevel)
	n := 0
	for _, at := range logTimes {
		for _, level := range []zapcore.Level{TraceLevel, zap.DebugLevel, zap.InfoLevel, zap.WarnLevel, zap.ErrorLevel} {
			for _, name := range logNames {
				for _, msg := range logMessages {
					ent := zapcore.Entry{Level: level, Time: at, LoggerName: name, Message: msg}
					if err := zapCore.Write(ent, nil); err != nil {
						t.Fatal(err)
					}
					if err := fastCore.Write(ent, nil); err != nil {
						t.Fatal(err)
					}
					n++
				}
			}
		}
	}
	compareLines(t, fastOut.String(), zapOut.String(), n)
}

// TestConsoleCoreWriteInfoWritesZapsBytes, into any writer and, formatted
// in the Sink's own buffer, into a Sink.
func TestConsoleCoreWriteInfoWritesZapsBytes(t *testing.T) {
	var viaZap, direct bytes.Buffer
	clock := &fixedClock{}
	logger := zap.New(newTestCore(t, zap.InfoLevel, zapcore.AddSync(&viaZap)), zap.WithClock(clock))
	cc := newTestCore(t, zap.InfoLevel, zapcore.AddSync(&direct))
	sink, read := pipeSink(t, SinkConfig{Batch: time.Hour, Limit: 16 << 20})
	intoSink := newTestCore(t, zap.InfoLevel, sink)
	n := 0
	for _, name := range logNames {
		for _, at := range logTimes {
			for _, msg := range logMessages {
				clock.t = at
				logger.Named(name).Info(msg)
				cc.writeInfoAt(at, name, []byte(msg))
				intoSink.writeInfoAt(at, name, []byte(msg))
				n++
			}
		}
	}
	compareLines(t, direct.String(), viaZap.String(), n)
	if first := strings.SplitN(direct.String(), "\n", 2)[0]; first != `2021-07-07 20:08:57,962 INFO 127.0.0.1:54321 - "GET /healthcheck HTTP/1.1" 200` {
		t.Errorf("first line %q", first)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	compareLines(t, read(), viaZap.String(), n)
}

// compareLines fails on the first line that differs.
func compareLines(t *testing.T, got, want string, n int) {
	t.Helper()
	g, w := strings.SplitAfter(got, "\n"), strings.SplitAfter(want, "\n")
	if len(w) != n+1 { // SplitAfter leaves an empty string after the last "\n"
		t.Fatalf("zap wrote %d lines, want %d", len(w)-1, n)
	}
	for i := range w {
		if i >= len(g) || g[i] != w[i] {
			t.Fatalf("line %d: got %q, zap wrote %q", i, g[min(i, len(g)-1)], w[i])
		}
	}
	if len(g) != len(w) {
		t.Fatalf("%d lines, zap wrote %d", len(g)-1, len(w)-1)
	}
}

// TestConsoleCoreKeepsOrder: lines written directly and through zap go to
// the same Sink, in the order they were logged.
func TestConsoleCoreKeepsOrder(t *testing.T) {
	sink, read := pipeSink(t, SinkConfig{Batch: time.Hour})
	cc := newTestCore(t, zap.InfoLevel, sink)
	logger := zap.New(cc).Named("worker-1[123]")
	logger.Warn("one")
	cc.WriteInfo(logger.Name(), []byte("two"))
	logger.Info("three")
	cc.WriteInfo(logger.Name(), []byte("four"))
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(read(), "\n"), "\n") {
		_, rest, _ := strings.Cut(line, ",") // after the seconds
		got = append(got, rest[4:])          // after the milliseconds
	}
	want := []string{"WARN worker-1[123] one", "INFO worker-1[123] two", "INFO worker-1[123] three", "INFO worker-1[123] four"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestConsoleCoreWriteInfoFromManyGoroutines: the prefix cache is guarded
// by the Sink's lock, which every direct line takes; lines from several
// goroutines, direct and through zap, come out whole (go test -race).
func TestConsoleCoreWriteInfoFromManyGoroutines(t *testing.T) {
	sink, read := pipeSink(t, SinkConfig{Batch: time.Millisecond, Limit: 16 << 20})
	cc := newTestCore(t, zap.InfoLevel, sink)
	logger := zap.New(cc).Named("worker-1[123]")
	out := make(chan string, 1)
	go func() { out <- read() }() // reading all along: nothing is dropped
	const goroutines, each = 4, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if i%5 == 0 {
					logger.Info(fmt.Sprintf("zap %d %d", g, i))
				} else {
					cc.WriteInfo(logger.Name(), fmt.Appendf(nil, "direct %d %d", g, i))
				}
			}
		})
	}
	wg.Wait()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(<-out, "\n"), "\n")
	whole := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO worker-1\[123\] (direct|zap) \d \d+$`)
	for _, l := range lines {
		if !whole.MatchString(l) {
			t.Fatalf("line %q", l)
		}
	}
	if len(lines) != goroutines*each {
		t.Errorf("%d lines, want %d", len(lines), goroutines*each)
	}
}

func TestConsoleCoreWriteInfoBelowLevel(t *testing.T) {
	for _, level := range []zapcore.Level{zap.WarnLevel, zap.ErrorLevel} {
		var out bytes.Buffer
		cc := newTestCore(t, level, zapcore.AddSync(&out))
		cc.WriteInfo("worker-1[123]", []byte("hidden"))
		zap.New(cc).Error("shown")
		if s := out.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "ERROR shown") {
			t.Errorf("at %v: %q", level, s)
		}
	}
}

// TestJSONHasNoDirectPath: only the console core offers InfoLineWriter.
func TestJSONHasNoDirectPath(t *testing.T) {
	core, err := newCore(JSON, zap.InfoLevel, zapcore.AddSync(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := core.(interface{ WriteInfo(string, []byte) }); ok {
		t.Errorf("json core %T writes console lines", core)
	}
	if _, err := newCore("yaml", zap.InfoLevel, zapcore.AddSync(io.Discard)); err == nil {
		t.Error("an unknown format should be refused")
	}
}

func TestConsoleCoreWriteInfoDoesNotAllocate(t *testing.T) {
	sink := devNullSink(t, SinkConfig{Batch: time.Millisecond})
	cc := newTestCore(t, zap.InfoLevel, sink)
	msg := []byte(`127.0.0.1:54321 - "GET /healthcheck HTTP/1.1" 200`)
	// The Sink's buffers grow at first, and are reused once written out.
	for range 1000 {
		cc.WriteInfo("worker-1[123]", msg)
	}
	if n := testing.AllocsPerRun(1000, func() { cc.WriteInfo("worker-1[123]", msg) }); n != 0 {
		t.Errorf("%v allocations per line", n)
	}
}

// BenchmarkInfoLine: what the worker's loop pays for an access line, into
// the worker's Sink (on /dev/null).
//
//	go test -run XXX -bench InfoLine -benchmem ./logs
func BenchmarkInfoLine(b *testing.B) {
	msg := []byte(`127.0.0.1:54321 - "GET /healthcheck HTTP/1.1" 200`)
	b.Run("zap", func(b *testing.B) {
		logger := zap.New(newTestCore(b, zap.InfoLevel, devNullSink(b, SinkConfig{Batch: 20 * time.Millisecond}))).Named("worker-1[123]")
		b.ReportAllocs()
		for b.Loop() {
			logger.Info(string(msg))
		}
	})
	b.Run("direct", func(b *testing.B) {
		cc := newTestCore(b, zap.InfoLevel, devNullSink(b, SinkConfig{Batch: 20 * time.Millisecond}))
		b.ReportAllocs()
		for b.Loop() {
			cc.WriteInfo("worker-1[123]", msg)
		}
	})
}

// A line's timestamp is the wall clock time.Now reads, in the same
// location, whichever way wallClock reads it.
func TestWallClockIsTimeNow(t *testing.T) {
	for range 1000 {
		before := time.Now().Truncate(time.Microsecond)
		got := wallClock()
		after := time.Now()
		if got.Before(before) || got.After(after) || got.Location() != time.Local {
			t.Fatalf("wallClock %v (%v), between time.Now's %v and %v", got, got.Location(), before, after)
		}
	}
}
