package experiment

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// logLine is one line of a child's stderr. The children run with
// --log-format json; Msg holds the raw text of any line that is not JSON (a
// panic, a usage error) so that it still shows up in error messages.
type logLine struct {
	Time   time.Time
	Logger string
	Msg    string
	JSON   bool
}

func parseLogLine(raw string) logLine {
	var j struct {
		Time   string `json:"time"`
		Logger string `json:"logger"`
		Msg    string `json:"msg"`
	}
	if err := json.Unmarshal([]byte(raw), &j); err != nil || j.Msg == "" {
		return logLine{Msg: raw}
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return logLine{Msg: raw}
	}
	return logLine{Time: t, Logger: j.Logger, Msg: j.Msg, JSON: true}
}

var (
	externalRunningRe = regexp.MustCompile(`demo external running on (http://[^\s"]+)`)
	serveRunningRe    = regexp.MustCompile(`demo running on (http://[^\s"]+)`)
	startedRe         = regexp.MustCompile(`^([0-9a-f-]{36}): started processing$`)
	// The worker's blocked-loop detector: `event loop blocked 1.20s by GET /
	// (request <id>)`, logged once per stall, when it ends.
	stallRe  = regexp.MustCompile(`event loop blocked (\S+) by (.*?)(?: \(request ([0-9a-f-]{36})\))?$`)
	workerRe = regexp.MustCompile(`^worker-(\d+)\[`)
)

// workerIndex reads the index out of a worker's logger name
// ("worker-2[4242]"); 0 for any other logger.
func workerIndex(logger string) int {
	m := workerRe.FindStringSubmatch(logger)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// started is a request's "started processing" line.
type started struct {
	at     time.Time
	worker int
}

// serverLog is what one scenario learns from its server's log.
type serverLog struct {
	started map[string]started // by request id
	stalls  []stallLine
}

type stallLine struct {
	end       time.Time
	worker    int
	duration  time.Duration
	cause     string
	requestID string
}

func readServerLog(lines []logLine) serverLog {
	sl := serverLog{started: map[string]started{}}
	for _, l := range lines {
		sl.add(l)
	}
	return sl
}

// add takes in one line, if it is one the experiment reads.
func (sl *serverLog) add(l logLine) {
	if !l.JSON {
		return
	}
	if m := startedRe.FindStringSubmatch(l.Msg); m != nil {
		sl.started[m[1]] = started{l.Time, workerIndex(l.Logger)}
		return
	}
	if m := stallRe.FindStringSubmatch(l.Msg); m != nil {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			return
		}
		sl.stalls = append(sl.stalls, stallLine{l.Time, workerIndex(l.Logger), d, m[2], m[3]})
	}
}

// logTap reads a server's log as it is written: the child's reader
// goroutine hands it every line (childproc's Spec.Text), so what the
// experiment needs is kept however many lines the server writes — under
// open-loop load, far more than a child keeps.
type logTap struct {
	mu sync.Mutex
	sl serverLog
}

func newLogTap() *logTap { return &logTap{sl: serverLog{started: map[string]started{}}} }

// text parses raw, keeps what matters and returns the line's message.
func (t *logTap) text(raw string) string {
	l := parseLogLine(raw)
	if l.JSON && (strings.HasSuffix(l.Msg, ": started processing") || strings.HasPrefix(l.Msg, "event loop blocked ")) {
		t.mu.Lock()
		t.sl.add(l)
		t.mu.Unlock()
	}
	return l.Msg
}

// log returns what was read; call it once the server has exited.
func (t *logTap) log() serverLog {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sl
}

// apply fills in what the server saw of res's requests: when each started
// and on which worker, and the stalls of its loops after t0.
func (sl serverLog) apply(res *Result, t0 time.Time) {
	for i := range res.Requests {
		q := &res.Requests[i]
		if s, ok := sl.started[q.ID]; ok && q.ID != "" {
			q.Started, q.HasStart, q.Worker = s.at.Sub(t0), true, s.worker
		}
	}
	for _, s := range sl.stalls {
		if s.end.Before(t0) {
			continue // start-up, not the experiment
		}
		res.Stalls = append(res.Stalls, Stall{
			Worker:    s.worker,
			Start:     s.end.Add(-s.duration).Sub(t0),
			Duration:  s.duration,
			RequestID: s.requestID,
			Cause:     s.cause,
		})
	}
}
