package contract

import (
	"bytes"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMessagesRoundTrip(t *testing.T) {
	msgs := []Msg{
		{Kind: Ready},
		{Kind: Beat, Value: 1764236400123456789, Text: `{"requests":3}`},
		{Kind: Alive, Value: -1},
		{Kind: Retire, Value: 1000, Text: "with\nnewline"},
	}
	var pipe bytes.Buffer
	for _, m := range msgs {
		pipe.Write(m.Encode())
	}
	r := NewReader(&pipe)
	for _, want := range msgs {
		want.Text = strings.ReplaceAll(want.Text, "\n", " ")
		got, err := r.Next()
		if err != nil || got != want {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last message: %v, want EOF", err)
	}
}

func TestEncodeStaysAtomic(t *testing.T) {
	m := Msg{Kind: Beat, Value: 1, Text: strings.Repeat("x", 10000)}
	if n := len(m.Encode()); n > MaxMsg {
		t.Fatalf("encoded %d bytes, over MaxMsg %d", n, MaxMsg)
	}
}

func TestBadLineIsAnError(t *testing.T) {
	if _, err := NewReader(strings.NewReader("beat soon\n")).Next(); err == nil {
		t.Fatal("a non-numeric value was accepted")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		if got, err := ParseMode(string(m)); got != m || err != nil {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	_, err := ParseMode("sync")
	if err == nil || err.Error() != `"sync": want one of mixed, async, threadpool` {
		t.Errorf("ParseMode(sync): %v", err)
	}
}

// TestLineFormatsMatchTheirExpressions: every message the contract builds
// is matched by its expression, with the parts it was built from in the
// groups, and not by the expression of another line.
func TestLineFormatsMatchTheirExpressions(t *testing.T) {
	const id = "9631c187-7e19-4c7a-9b7e-2ad44dfa4f3b"
	const other = "00000000-7e19-4c7a-9b7e-2ad44dfa4f3b"
	type want struct {
		re     *regexp.Regexp
		groups []string // nil: must not match
	}
	for _, tc := range []struct {
		line  string
		wants []want
	}{
		{"2021-07-07 20:08:57,962 INFO " + RunningMsg(ServeName, "http://127.0.0.1:8000"), []want{
			{RunningLine(ServeName), []string{"http://127.0.0.1:8000"}},
			{RunningLine(ExternalName), nil},
		}},
		{RunningMsg(ServeName, "unix:/tmp/d.sock"), []want{{RunningLine(ServeName), []string{"unix:/tmp/d.sock"}}}},
		{`{"msg":"` + RunningMsg(ServeName, "http://127.0.0.1:1") + `"}`, []want{{RunningLine(ServeName), []string{"http://127.0.0.1:1"}}}},
		{"fasthttp peer running on http://127.0.0.1:1 (x)", []want{{RunningLine(ServeName), nil}}},
		{RunningMsg(ExternalName, "http://127.0.0.1:1", "delay 2s"), []want{
			{RunningLine(ExternalName), []string{"http://127.0.0.1:1"}},
			{RunningLine(ServeName), nil},
		}},
		{WorkerStartedMsg(4242, "2/4"), []want{
			{WorkerStartedLine("2/4"), []string{"4242", "2/4"}},
			{WorkerStartedLine(""), []string{"4242", "2/4"}},
			{WorkerStartedLine("1/4"), nil},
		}},
		{WorkerReadyMsg(2, 4, "mode mixed", "demo-worker-2"), []want{
			{WorkerReadyLine(2, 4), []string{"2", "4"}},
			{WorkerReadyLine(0, 0), []string{"2", "4"}},
			{WorkerReadyLine(1, 4), nil},
		}},
		{string(AppendStarted(nil, id)), []want{
			{StartedLine(""), []string{id}},
			{StartedLine(id), []string{id}},
			{StartedLine(other), nil},
			{FinishedLine(""), nil},
		}},
		{string(AppendFinished(nil, id)), []want{{FinishedLine(id), []string{id}}, {StartedLine(""), nil}}},
		{string(AppendCall(nil, id, 2, "200 OK")), []want{
			{CallLine(id, 2, ""), []string{id, "200 OK"}},
			{CallLine("", 2, "200 OK"), []string{id, "200 OK"}},
			{CallLine("", 2, "200"), nil},
			{CallLine(id, 1, ""), nil},
		}},
		{string(AppendLogStep(nil, id, 2, 3)), []want{{LogStepLine(id, 2, 3), []string{id}}, {LogStepLine("", 1, 3), nil}}},
		{string(AppendLogStep(nil, id, 1, 10)), []want{{LogStepLine(id, 1, 10), []string{id}}, {LogStepLine("", 1, 1), nil}}},
		{"x\n" + StallMsg(time.Second, RequestLabel("GET /", id)) + "\ny", []want{{StallLine("GET /", ""), []string{"1s", "GET /", id}}}},
		{StallMsg(1234*time.Millisecond, RequestLabel("GET /x", id)), []want{
			{StallLine("", ""), []string{"1.23s", "GET /x", id}},
			{StallLine("GET /x", id), []string{"1.23s", "GET /x", id}},
			{StallLine("GET /x", ""), []string{"1.23s", "GET /x", id}},
			{StallLine("GET /", ""), nil},
			{StallLine("", other), nil},
			{StallingLine("", ""), nil},
		}},
		{StallMsg(150*time.Millisecond, "start-up"), []want{
			{StallLine("", ""), []string{"150ms", "start-up", ""}},
			{StallLine("start-up", ""), []string{"150ms", "start-up", ""}},
		}},
		{StallingMsg(103*time.Millisecond, RequestLabel("GET /", id), "routes./ steps[1] call blocking: a → b"), []want{
			{StallingLine("GET /", id), []string{"103ms", "GET /", id, "routes./ steps[1] call blocking: a → b"}},
			{StallingLine("", ""), []string{"103ms", "GET /", id, "routes./ steps[1] call blocking: a → b"}},
			{StallLine("", ""), nil},
		}},
		{WorkerStallingMsg("1/2", 4242, 3040*time.Millisecond, RequestLabel("GET /", id)), []want{
			{WorkerStallingLine("1/2", 4242), []string{"1/2", "4242", "3.0"}},
			{WorkerStallingLine("", 0), []string{"1/2", "4242", "3.0"}},
			{WorkerStallingLine("2/2", 0), nil},
			{WorkerStallLine("", 0), nil},
		}},
		{WorkerStallMsg("1/2", 4242, 3260*time.Millisecond), []want{
			{WorkerStallLine("1/2", 4242), []string{"1/2", "4242", "3.3"}},
			{WorkerStallingLine("", 0), nil},
		}},
	} {
		for _, w := range tc.wants {
			m := w.re.FindStringSubmatch(tc.line)
			switch {
			case w.groups == nil && m != nil:
				t.Errorf("%q matches %v: %q", tc.line, w.re, m)
			case w.groups != nil && (m == nil || !slices.Equal(m[1:], w.groups)):
				t.Errorf("%q against %v: %q, want groups %q", tc.line, w.re, m, w.groups)
			}
		}
	}
}

func TestRequestLabelSplits(t *testing.T) {
	const id = "9631c187-7e19-4c7a-9b7e-2ad44dfa4f3b"
	for _, tc := range []struct{ label, cause, id string }{
		{RequestLabel("GET /a (b)", id), "GET /a (b)", id},
		{"start-up", "start-up", ""},
		{"a loop callback", "a loop callback", ""},
		{"GET /x (y)", "GET /x (y)", ""},
	} {
		if cause, got := SplitRequestLabel(tc.label); cause != tc.cause || got != tc.id {
			t.Errorf("SplitRequestLabel(%q) = %q, %q; want %q, %q", tc.label, cause, got, tc.cause, tc.id)
		}
	}
}

func TestParseLogEntry(t *testing.T) {
	e, ok := ParseLogEntry(`{"level":"WARN","time":"2026-03-04T05:06:07.123456789Z","logger":"worker-2[12]","msg":"event loop blocked 1.2s by GET /","event":"stall","stall_s":1.2,"cause":"GET /","request_id":"x","step":"routes./ steps[1] call blocking","worker":"2/3"}`)
	want := LogEntry{Time: time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC), Level: "WARN", Logger: "worker-2[12]",
		Msg: "event loop blocked 1.2s by GET /", Event: EventStall, StallS: 1.2, Cause: "GET /", RequestID: "x",
		Step: "routes./ steps[1] call blocking", Worker: "2/3"}
	if !ok || !e.Time.Equal(want.Time) {
		t.Fatalf("ParseLogEntry: %+v, %v", e, ok)
	}
	e.Time = want.Time
	if e != want || e.Stall() != 1200*time.Millisecond || e.WorkerIndex() != 2 {
		t.Errorf("ParseLogEntry:\n%+v\nwant\n%+v", e, want)
	}
	if e, ok := ParseLogEntry(`{"time":"2026-03-04T05:06:07Z","msg":"m","worker":1,"url":"u"}`); !ok || e.Msg != "m" || e.URL != "u" || e.Worker != "" {
		t.Errorf("a field of another type: %+v, %v; want it skipped and the rest read", e, ok)
	}
	for _, raw := range []string{`demo: --mode "x": want one of mixed, async, threadpool`, `{"msg":"no time"}`, `{"time":"2026-03-04T05:06:07Z"}`, `panic: boom`, `{`} {
		if _, ok := ParseLogEntry(raw); ok {
			t.Errorf("ParseLogEntry(%q) took it for a log entry", raw)
		}
	}
}

func TestWorkerNames(t *testing.T) {
	if got := WorkerName(2, 4); got != "2/4" {
		t.Errorf("WorkerName(2, 4) = %q", got)
	}
	for name, want := range map[string]int{"2/4": 2, "12/12": 12, "": 0, "x/2": 0, "0/1": 0} {
		if got := (LogEntry{Worker: name}).WorkerIndex(); got != want {
			t.Errorf("WorkerIndex of %q = %d, want %d", name, got, want)
		}
	}
}
