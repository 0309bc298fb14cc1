// Package logs is how every role of demo logs: zap, in uvicorn's console
// format or as JSON, on stderr through a Sink that never makes the logging
// goroutine wait — a worker's event loop, the master's only event
// goroutine — whatever the reader of stderr does: a reader that stops
// reading costs dropped lines (counted, and reported once it reads again),
// a reader that goes away turns logging off. For the plain lines a worker
// logs per request, the console format has a direct path past zap
// (InfoLineWriter).
package logs

import (
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"demo/setting"
)

// Format is how lines are written.
type Format string

const (
	// Console is uvicorn's: `2021-07-07 20:08:57,962 INFO worker-1[123] message`.
	Console Format = "console"
	// JSON is one object per line (time, level, logger, msg), for tools.
	JSON Format = "json"
)

// ParseFormat accepts console or json.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Console, JSON:
		return f, nil
	}
	return "", setting.Errorf("Format", "%q: want console or json", s)
}

// Levels lists the level names ParseLevel accepts, Uvicorn's, most
// detailed first.
var Levels = []string{"trace", "debug", "info", "warning", "error", "critical"}

// TraceLevel is below zap's debug, as Uvicorn's TRACE (5) is below
// logging.DEBUG: a worker's connections and requests, step by step. Lines
// at it say TRACE.
const TraceLevel = zap.DebugLevel - 1

// ParseLevel accepts Uvicorn's level names. demo logs nothing at critical,
// so critical shows nothing but what main prints on the way out.
func ParseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "trace":
		return TraceLevel, nil
	case "debug":
		return zap.DebugLevel, nil
	case "info":
		return zap.InfoLevel, nil
	case "warning":
		return zap.WarnLevel, nil
	case "error":
		return zap.ErrorLevel, nil
	case "critical":
		return zap.DPanicLevel, nil
	}
	return 0, setting.Errorf("Level", "%q: want one of %s", s, strings.Join(Levels, ", "))
}

// Config is what New needs.
type Config struct {
	Format Format
	Level  zapcore.Level
	// Name names the logger (`worker-1[4711]`, `external`); the master's
	// is unnamed.
	Name string
	// Batch: see SinkConfig. A worker, which logs per request, holds its
	// lines up to 50 ms to write them together.
	Batch time.Duration
	// Out is where lines go; default os.Stderr.
	Out *os.File
}

// InfoLineWriter writes a plain INFO line as Logger.Info would, cheaper:
// see consoleCore. It is what a worker's Config takes.
type InfoLineWriter interface {
	WriteInfo(name string, msg []byte)
}

// Logger is a zap logger on a Sink. Close it before the process exits.
type Logger struct {
	*zap.Logger
	sink  *Sink
	lines InfoLineWriter
}

// New starts a Logger writing to cfg.Out.
func New(cfg Config) (*Logger, error) {
	if cfg.Out == nil {
		cfg.Out = os.Stderr
	}
	l := &Logger{}
	sink, err := NewSink(cfg.Out, SinkConfig{Batch: cfg.Batch, Report: l.reportDropped})
	if err != nil {
		return nil, err
	}
	core, err := newCore(cfg.Format, cfg.Level, sink)
	if err != nil {
		sink.Close()
		return nil, err
	}
	l.sink = sink
	// zap writes its own errors to ErrorOutput, stderr by default, and
	// blocking: the Sink never fails a write, but keep zap off stderr.
	l.Logger = zap.New(core, zap.ErrorOutput(sink))
	if cfg.Name != "" {
		l.Logger = l.Logger.Named(cfg.Name)
	}
	if cc, ok := core.(*consoleCore); ok {
		l.lines = cc
	}
	return l, nil
}

func (l *Logger) reportDropped(n uint64) {
	l.Warn(fmt.Sprintf("dropped %d log lines while stderr was not being read", n))
}

// InfoLines returns the direct path for plain INFO lines, or nil when the
// format has none (JSON).
func (l *Logger) InfoLines() InfoLineWriter { return l.lines }

// Dropped reports how many lines were dropped so far because stderr was
// not being read fast enough, or no more at all.
func (l *Logger) Dropped() uint64 { return l.sink.Dropped() }

// Close writes out what is held, waiting as long as stderr is being read
// but not for a reader that stopped, and stops the Sink.
func (l *Logger) Close() error { return l.sink.Close() }
