package logs

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"demo/contract"
)

// TestToolFieldsOnlyInJSON: an entry with contract's fields is the very line
// it would be without them in the console format, and carries them as keys
// in JSON, where contract's reader finds them. Other fields keep showing
// in both.
func TestToolFieldsOnlyInJSON(t *testing.T) {
	at := time.Date(2021, 7, 7, 20, 8, 57, 962_345_678, zone)
	tools := contract.StallFields(contract.EventStall, "2/3", 1250*time.Millisecond, contract.RequestLabel("GET /", "id-1"), "", "")
	log := func(format Format, fields ...zap.Field) string {
		var out bytes.Buffer
		core, err := newCore(format, zap.InfoLevel, zapcore.AddSync(&out))
		if err != nil {
			t.Fatal(err)
		}
		logger := zap.New(core, zap.WithClock(&fixedClock{at})).Named("worker-2[12]")
		logger.Warn("event loop blocked 1.25s by GET /", fields...)
		logger.With(zap.String("kept", "k")).Info("running", fields...)
		return out.String()
	}

	if with, without := log(Console, tools), log(Console); with != without {
		t.Errorf("console with tool fields:\n%s\nwithout:\n%s", with, without)
	}
	other := zap.String("error", "boom")
	want := "2021-07-07 20:08:57,962 WARN worker-2[12] event loop blocked 1.25s by GET / {\"error\": \"boom\"}\n"
	if got := log(Console, tools, other, tools); got[:len(want)] != want {
		t.Errorf("console with other fields:\n%s\nwant first line\n%s", got, want)
	}

	lines := bytes.Split(bytes.TrimSpace([]byte(log(JSON, tools, other))), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("json: %q", lines)
	}
	e, ok := contract.ParseLogEntry(string(lines[0]))
	if !ok || e.Event != contract.EventStall || e.Stall() != 1250*time.Millisecond || e.RequestID != "id-1" || e.Worker != "2/3" || e.Cause != "GET /" ||
		e.Msg != "event loop blocked 1.25s by GET /" || e.Logger != "worker-2[12]" || !e.Time.Equal(at) {
		t.Errorf("json %s read as %+v, %v", lines[0], e, ok)
	}
	var raw map[string]any
	if err := json.Unmarshal(lines[1], &raw); err != nil || raw["kept"] != "k" || raw["error"] != "boom" || raw[contract.FieldEvent] != "stall" {
		t.Errorf("json with context: %s (%v)", lines[1], err)
	}
}
