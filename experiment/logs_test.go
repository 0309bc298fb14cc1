package experiment

import (
	"strings"
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	l := parseLogLine(`{"level":"INFO","time":"2026-03-04T05:06:07.123456789Z","logger":"worker-2[4242]","msg":"` + uuid(1) + `: started processing","pid":4242}`)
	if !l.JSON || l.Logger != "worker-2[4242]" || workerIndex(l.Logger) != 2 ||
		!l.Time.Equal(time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)) {
		t.Errorf("json line parsed as %+v", l)
	}
	for _, raw := range []string{`demo: --mode "x": want one of mixed, async, threadpool`, `{"msg":"no time"}`, `panic: boom`} {
		if l := parseLogLine(raw); l.JSON || l.Msg != raw {
			t.Errorf("%q parsed as %+v, want the raw text kept as a non-JSON line", raw, l)
		}
	}
	if workerIndex("master") != 0 || workerIndex("worker-x[1]") != 0 {
		t.Error("workerIndex accepted a non-worker logger")
	}
}

func TestReadServerLogFillsInStartsAndStalls(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	lines := []string{
		`{"level":"INFO","time":"` + at(-ms(900)) + `","logger":"worker-1[11]","msg":"event loop blocked 150ms by start-up"}`,
		`{"level":"INFO","time":"` + at(-ms(100)) + `","logger":"master","msg":"demo running on http://127.0.0.1:1234 (Press CTRL+C to quit)"}`,
		`{"level":"INFO","time":"` + at(ms(5)) + `","logger":"worker-2[12]","msg":"` + uuid(1) + `: started processing"}`,
		`{"level":"INFO","time":"` + at(ms(2005)) + `","logger":"worker-2[12]","msg":"` + uuid(1) + ` 1: <Response [200]>"}`,
		`{"level":"INFO","time":"` + at(ms(4010)) + `","logger":"worker-2[12]","msg":"` + uuid(1) + `: finished!"}`,
		`{"level":"INFO","time":"` + at(ms(4011)) + `","logger":"worker-2[12]","msg":"` + uuid(2) + `: started processing"}`,
		`{"level":"WARN","time":"` + at(ms(4012)) + `","logger":"worker-2[12]","msg":"event loop blocked 4.007s by GET / (request ` + uuid(1) + `)"}`,
		`not json at all`,
	}
	var parsed []logLine
	for _, l := range lines {
		parsed = append(parsed, parseLogLine(l))
	}
	sl := readServerLog(parsed)
	if got := serveRunningRe.FindStringSubmatch(parsed[1].Msg); got == nil || got[1] != "http://127.0.0.1:1234" {
		t.Errorf("running line: %v", got)
	}

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
		t.Fatalf("stalls %+v, want only the one after t0", res.Stalls)
	}
	s := res.Stalls[0]
	if s.Worker != 2 || s.Duration != ms(4007) || s.Start != ms(5) || s.RequestID != uuid(1) || s.Cause != "GET /" {
		t.Errorf("stall %+v", s)
	}
	if got := Describe(res, testSettings); !strings.HasPrefix(got, "requests ran one after the other") {
		t.Errorf("words: %q", got)
	}
}
