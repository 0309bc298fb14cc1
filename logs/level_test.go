package logs

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestTraceLevel: trace is a level below debug whose lines say TRACE, in
// both formats; debug leaves them out.
func TestTraceLevel(t *testing.T) {
	at := time.Date(2021, 7, 7, 20, 8, 57, 962_345_678, zone)
	log := func(levelName string, format Format) string {
		level, err := ParseLevel(levelName)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		core, err := newCore(format, level, zapcore.AddSync(&out))
		if err != nil {
			t.Fatal(err)
		}
		logger := zap.New(core, zap.WithClock(&fixedClock{at})).Named("worker-1[123]")
		logger.Log(TraceLevel, "127.0.0.1:54321 - HTTP connection made")
		logger.Debug("a debug line")
		return out.String()
	}
	const (
		traceLine = "2021-07-07 20:08:57,962 TRACE worker-1[123] 127.0.0.1:54321 - HTTP connection made\n"
		debugLine = "2021-07-07 20:08:57,962 DEBUG worker-1[123] a debug line\n"
	)
	if got := log("trace", Console); got != traceLine+debugLine {
		t.Errorf("--log-level trace:\n%s\nwant\n%s%s", got, traceLine, debugLine)
	}
	if got := log("debug", Console); got != debugLine {
		t.Errorf("--log-level debug:\n%s\nwant\n%s", got, debugLine)
	}
	if got := log("trace", JSON); !strings.Contains(got, `"level":"TRACE"`) || !strings.Contains(got, `"level":"DEBUG"`) {
		t.Errorf("--log-level trace --log-format json:\n%s", got)
	}
}
