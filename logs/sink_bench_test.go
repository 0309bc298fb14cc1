package logs

import (
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkLogSinks measures what one access line costs the goroutine that
// logs it (a worker's loop), through the console core's direct path, into:
//
//   - batch: the worker's sink before package logs (legacyBatchWriter
//     below): held, written by a timer goroutine, but Write waited for the
//     reader beyond 1 MiB and Sync wrote on the caller;
//   - locked: zapcore.Lock(stderr), the master's and the external API's
//     sink before: one write(2) per line, on the caller;
//   - sink: the Sink, reader reading;
//   - stalled: the Sink, reader not reading (every line dropped once the
//     limit is reached; batch and locked would block forever here).
//
// All four run side by side in one run, in rounds of 1,000 lines taken in
// turn, each to a pipe of its own drained by a goroutine as fast as it
// can; the medians of the rounds and the ratios to sink are reported, and
// how many of sink's lines reached the reader (the Sink drops rather than
// wait when even a draining reader falls behind the benchmark's loop).
//
//	go test -run XXX -bench LogSinks -benchtime 2000x ./logs
func BenchmarkLogSinks(b *testing.B) {
	msg := []byte(`127.0.0.1:54321 - "GET /healthcheck HTTP/1.1" 200`)
	const name, round = "worker-1[123]", 1000

	batchOut, batchRead := drainedPipe(b)
	batch := &legacyBatchWriter{w: batchOut, delay: 20 * time.Millisecond}
	lockedOut, lockedRead := drainedPipe(b)
	sinkOut, sinkRead := drainedPipe(b)
	sink, err := NewSink(sinkOut, SinkConfig{Batch: 20 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	sinkOut.Close()
	stalled, _ := stalledPipe(b, SinkConfig{Batch: 20 * time.Millisecond})

	variants := []struct {
		name string
		core *consoleCore
	}{
		{"batch", newTestCore(b, zap.InfoLevel, batch)},
		{"locked", newTestCore(b, zap.InfoLevel, zapcore.Lock(lockedOut))},
		{"sink", newTestCore(b, zap.InfoLevel, sink)},
		{"stalled", newTestCore(b, zap.InfoLevel, stalled)},
	}
	spent := make([][]time.Duration, len(variants))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for k := range variants {
			v := variants[(k+i)%len(variants)] // alternate which goes first
			start := time.Now()
			for range round {
				v.core.WriteInfo(name, msg)
			}
			spent[(k+i)%len(variants)] = append(spent[(k+i)%len(variants)], time.Since(start))
		}
	}
	b.StopTimer()
	med := make([]float64, len(variants))
	for k, v := range variants {
		med[k] = float64(median(spent[k]).Nanoseconds()) / round
		b.ReportMetric(med[k], v.name+"-ns/line")
	}
	b.ReportMetric(med[0]/med[2], "batch/sink")
	b.ReportMetric(med[1]/med[2], "locked/sink")
	b.ReportMetric(med[3]/med[2], "stalled/sink")

	batch.Sync()
	sink.Close()
	lockedOut.Close()
	batchOut.Close()
	sent := float64(len(spent[2]) * round)
	delivered := float64(sinkRead()) / float64(len(sinkLine(name, msg)))
	b.ReportMetric(100*delivered/sent, "sink-delivered-%")
	batchRead()
	lockedRead()
}

func sinkLine(name string, msg []byte) []byte {
	return append(append([]byte("2021-07-07 20:08:57,962 INFO "+name+" "), msg...), '\n')
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// drainedPipe is a pipe whose reader reads as fast as it can; read waits
// for the write end to be closed and returns how many bytes came through.
func drainedPipe(b *testing.B) (*os.File, func() int64) {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, _ = io.CopyBuffer(io.Discard, r, make([]byte, 256<<10))
		r.Close()
	}()
	return w, func() int64 { wg.Wait(); return n }
}

// legacyBatchWriter is the worker's log writer before package logs, kept
// here only as the benchmark's baseline: lines held and written by a timer
// goroutine, Write waiting for the reader once 1 MiB is held, Sync writing
// on the caller.
type legacyBatchWriter struct {
	delay time.Duration

	mu    sync.Mutex
	buf   []byte
	spare []byte
	armed bool
	timer *time.Timer

	wmu sync.Mutex
	w   io.Writer
}

func (b *legacyBatchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= 1<<20
	if !b.armed && !full {
		b.armed = true
		if b.timer == nil {
			b.timer = time.AfterFunc(b.delay, b.timed)
		} else {
			b.timer.Reset(b.delay)
		}
	}
	b.mu.Unlock()
	if full {
		return len(p), b.Sync()
	}
	return len(p), nil
}

func (b *legacyBatchWriter) timed() {
	b.mu.Lock()
	b.armed = false
	b.mu.Unlock()
	_ = b.Sync()
}

func (b *legacyBatchWriter) Sync() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	_, err := b.w.Write(out)
	b.mu.Lock()
	b.spare = out[:0]
	b.mu.Unlock()
	return err
}
