package experiment

import (
	"strings"
	"testing"
	"time"
)

func TestLineTextIsTheMessageOrTheRawLine(t *testing.T) {
	if got := lineText(`{"level":"INFO","time":"2026-03-04T05:06:07.123456789Z","logger":"worker-2[4242]","msg":"hello","event":"x"}`); got != "hello" {
		t.Errorf("json line's text %q", got)
	}
	for _, raw := range []string{`demo: --mode "x": want one of mixed, async, threadpool`, `{"msg":"no time"}`, `panic: boom`} {
		if got := lineText(raw); got != raw {
			t.Errorf("%q's text is %q, want the raw line", raw, got)
		}
	}
}

// TestReadServerLogFillsInStartsAndStalls: starts and stalls come from the
// entries' fields alone; the messages are a person's and are not read.
func TestReadServerLogFillsInStartsAndStalls(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	lines := []string{
		`{"level":"WARN","time":"` + at(-ms(900)) + `","logger":"worker-1[11]","msg":"event loop blocked 150ms by start-up","event":"stall","stall_s":0.15,"cause":"start-up","worker":"1/2"}`,
		`{"level":"INFO","time":"` + at(-ms(100)) + `","msg":"demo running on http://127.0.0.1:1234 (Press CTRL+C to quit)","event":"running","url":"http://127.0.0.1:1234"}`,
		`{"level":"INFO","time":"` + at(ms(5)) + `","logger":"worker-2[12]","msg":"a person's words","event":"request_started","request_id":"` + uuid(1) + `","worker":"2/2"}`,
		`{"level":"INFO","time":"` + at(ms(2005)) + `","logger":"worker-2[12]","msg":"` + uuid(1) + ` 1: <Response [200]>"}`,
		`{"level":"INFO","time":"` + at(ms(4010)) + `","logger":"worker-2[12]","msg":"` + uuid(1) + `: finished!","event":"request_finished","request_id":"` + uuid(1) + `","worker":"2/2"}`,
		`{"level":"INFO","time":"` + at(ms(4011)) + `","logger":"worker-2[12]","msg":"` + uuid(2) + `: started processing","event":"request_started","request_id":"` + uuid(2) + `","worker":"2/2"}`,
		`{"level":"WARN","time":"` + at(ms(4012)) + `","logger":"worker-2[12]","msg":"event loop blocked for 4.0s so far","event":"stalling","stall_s":4.0,"cause":"GET /","worker":"2/2"}`,
		`{"level":"WARN","time":"` + at(ms(4012)) + `","logger":"worker-2[12]","msg":"words","event":"stall","stall_s":4.007,"cause":"GET /","request_id":"` + uuid(1) + `","step":"routes./ steps[1] call blocking","worker":"2/2"}`,
		`not json at all`,
	}
	tap := newLogTap()
	for _, l := range lines {
		tap.text(l)
	}
	sl := tap.log()

	res := Result{Scenario: Scenario{Mode: Mixed, Workers: 2, Concurrency: 3, Path: "/"}, Requests: []Request{
		{Index: 1, ID: uuid(1), Finished: ms(4012), Status: 200},
		{Index: 2, ID: uuid(2), Finished: ms(8020), Status: 200},
		{Index: 3, Finished: ms(10), Err: "connection reset"}, // no id: never answered
	}}
	sl.apply(&res, t0)
	q := res.Requests
	if !q[0].HasStart || q[0].Started != ms(5) || q[0].Worker != 2 {
		t.Errorf("request 1: %+v, want started at 5ms on worker 2", q[0])
	}
	if !q[1].HasStart || q[1].Started != ms(4011) || q[1].Worker != 2 {
		t.Errorf("request 2: %+v, want started at 4.011s on worker 2", q[1])
	}
	if q[2].HasStart || q[2].Worker != 0 {
		t.Errorf("request 3 without an id: %+v", q[2])
	}
	if len(res.Stalls) != 1 {
		t.Fatalf("stalls %+v, want only the one after t0 that ended", res.Stalls)
	}
	s := res.Stalls[0]
	if s.Worker != 2 || s.Duration != ms(4007) || s.Start != ms(5) || s.RequestID != uuid(1) || s.Cause != "GET /" {
		t.Errorf("stall %+v", s)
	}
	if got := Describe(res, testSettings); !strings.HasPrefix(got, "requests ran one after the other") {
		t.Errorf("words: %q", got)
	}
}
