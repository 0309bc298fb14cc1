package logs

// The console format: uvicorn's lines, written by zap's console encoder or,
// for what a worker logs once or more per request, by shortcuts that write
// exactly zap's bytes for less.

import (
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// consoleTimeLayout is uvicorn's timestamp, milliseconds after a comma.
const consoleTimeLayout = "2006-01-02 15:04:05,000"

// newCore returns the core of New's logger, writing to out in format what
// is at least level.
func newCore(format Format, level zapcore.Level, out zapcore.WriteSyncer) (zapcore.Core, error) {
	enc := encoderConfig()
	switch format {
	case Console:
		encoder := newConsoleEncoder(enc)
		core := zapcore.NewCore(hideToolFields{encoder}, out, level)
		if _, fast := encoder.(*consoleEncoder); fast {
			// The fast encoder's format is zap's (newConsoleEncoder
			// checked): plain INFO lines may skip zap altogether.
			sink, _ := out.(*Sink)
			return &consoleCore{Core: core, out: out, sink: sink, info: level.Enabled(zapcore.InfoLevel), prefixAt: math.MinInt64}, nil
		}
		return core, nil
	case JSON:
		enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		return zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, level), nil
	}
	return nil, fmt.Errorf("log format %q: want console or json", format)
}

// encoderConfig is the console format; json changes the time's.
func encoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:          "time",
		LevelKey:         "level",
		NameKey:          "logger",
		MessageKey:       "msg",
		LineEnding:       "\n",
		EncodeLevel:      encodeLevel,
		EncodeTime:       zapcore.TimeEncoderOfLayout(consoleTimeLayout),
		EncodeDuration:   zapcore.StringDurationEncoder,
		ConsoleSeparator: " ",
	}
}

// levelName is zap's name of level in capitals, and TRACE for TraceLevel.
func levelName(level zapcore.Level) string {
	if level == TraceLevel {
		return "TRACE"
	}
	return level.CapitalString()
}

func encodeLevel(level zapcore.Level, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(levelName(level))
}

// consoleCore is the console logger's core with a direct path for the plain
// INFO lines a worker logs per request (InfoLineWriter): through zap, a
// line costs a string, a clock read, an entry from a pool, a level check
// and the encoder's call, paid by the event loop once or more per request.
// WriteInfo appends the same bytes straight to out for about a third of
// that, without allocating, the timestamp formatted once per millisecond
// (BenchmarkInfoLine; docs/performance.md); into a Sink, it formats the
// line in the Sink's own buffer, under the Sink's lock alone. Everything
// else goes through zap, to the same out, so lines keep their order.
type consoleCore struct {
	zapcore.Core // zap's, with the fast consoleEncoder
	out          zapcore.WriteSyncer
	sink         *Sink // out, when it is a Sink
	info         bool  // INFO is enabled: the level is fixed for the core's life

	// WriteInfo may be called from any goroutine: what follows is guarded
	// by the Sink's lock when there is a Sink, else by mu.
	mu       sync.Mutex
	prefixAt int64  // the Unix millisecond prefix is for
	prefix   []byte // `2021-07-07 20:08:57,962 INFO `
	line     []byte // without a Sink: the line, formatted before Write
}

var _ InfoLineWriter = (*consoleCore)(nil)

// WriteInfo writes what logger.Named(name).Info(string(msg)) would, if
// logger has this core and no options: msg is a plain message, no fields.
func (c *consoleCore) WriteInfo(name string, msg []byte) {
	// zap reads the clock too: the loop's cached Loop.Now is as old as the
	// loop's last wake-up, seconds old after a blocking call.
	c.writeInfoAt(wallClock(), name, msg)
}

// writeInfoAt is WriteInfo at t. Every t must be in one location (time.Now
// gives time.Local): the prefix is cached by t's millisecond alone.
func (c *consoleCore) writeInfoAt(t time.Time, name string, msg []byte) {
	if !c.info {
		return
	}
	if c.sink != nil {
		// The time is formatted for years 1000 to 9999, as wide as its layout.
		size := len(consoleTimeLayout) + len(" INFO ") + len(name) + 1 + len(msg) + 1
		c.sink.writeLine(size, func(b []byte) []byte { return c.appendInfo(b, t, name, msg) })
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.line = c.appendInfo(c.line[:0], t, name, msg)
	_, _ = c.out.Write(c.line) // as zap does, minus reporting to its ErrorOutput
}

// appendInfo appends the line to b; the caller holds the lock that guards
// the prefix.
func (c *consoleCore) appendInfo(b []byte, t time.Time, name string, msg []byte) []byte {
	if ms := t.UnixMilli(); ms != c.prefixAt {
		c.prefix = append(t.AppendFormat(c.prefix[:0], consoleTimeLayout), " INFO "...)
		c.prefixAt = ms
	}
	b = append(b, c.prefix...)
	if name != "" {
		b = append(append(b, name...), ' ')
	}
	return append(append(b, msg...), '\n')
}

// consoleEncoder is zap's console encoder with a fast path for what a worker
// logs once or more per request: a plain message, no fields, no context. zap
// formats each element of a line through fmt and boxes it; appending the
// same bytes directly costs well under half as much. Anything else goes to
// zap's.
type consoleEncoder struct {
	zapcore.Encoder // zap's console encoder
	buffers         buffer.Pool
}

// newConsoleEncoder returns the fast encoder if, for this configuration,
// it writes exactly zap's bytes (checked here, on sample entries), and
// zap's console encoder otherwise.
func newConsoleEncoder(cfg zapcore.EncoderConfig) zapcore.Encoder {
	zapEnc := zapcore.NewConsoleEncoder(cfg)
	fast := &consoleEncoder{Encoder: zapEnc, buffers: buffer.NewPool()}
	at := time.Date(2021, 7, 7, 20, 8, 57, 962_345_678, time.Local)
	for _, level := range []zapcore.Level{TraceLevel, zap.DebugLevel, zap.InfoLevel, zap.WarnLevel, zap.ErrorLevel} {
		for _, name := range []string{"", "worker-1[123]"} {
			ent := zapcore.Entry{Level: level, Time: at, LoggerName: name, Message: `1 - "GET / HTTP/1.1" 200`}
			want, err1 := zapEnc.EncodeEntry(ent, nil)
			got, err2 := fast.EncodeEntry(ent, nil)
			if err1 != nil || err2 != nil || want.String() != got.String() {
				return zapEnc
			}
		}
	}
	return fast
}

// Clone is what zap calls before adding context (Logger.With): the clone is
// zap's encoder alone, since the fast path writes no context.
func (e *consoleEncoder) Clone() zapcore.Encoder { return e.Encoder.Clone() }

// EncodeEntry writes `2021-07-07 20:08:57,962 INFO worker-1[123] message`.
func (e *consoleEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	if len(fields) > 0 || ent.Caller.Defined || ent.Stack != "" {
		return e.Encoder.EncodeEntry(ent, fields)
	}
	b := e.buffers.Get()
	y, mo, d := ent.Time.Date()
	h, mi, sec := ent.Time.Clock()
	ms := ent.Time.Nanosecond() / 1e6
	for _, f := range [...]struct {
		n, width int
		sep      byte
	}{{y, 4, '-'}, {int(mo), 2, '-'}, {d, 2, ' '}, {h, 2, ':'}, {mi, 2, ':'}, {sec, 2, ','}, {ms, 3, ' '}} {
		for div := [...]int{1, 10, 100, 1000}[f.width-1]; div > 0; div /= 10 {
			b.AppendByte(byte('0' + f.n/div%10))
		}
		b.AppendByte(f.sep)
	}
	b.AppendString(levelName(ent.Level))
	if ent.LoggerName != "" {
		b.AppendByte(' ')
		b.AppendString(ent.LoggerName)
	}
	b.AppendByte(' ')
	b.AppendString(ent.Message)
	b.AppendByte('\n')
	return b, nil
}
