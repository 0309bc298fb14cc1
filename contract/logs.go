package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The log lines other processes read: the readiness lines that tools wait
// for, and the lines that say when a request started and when a loop was
// blocked. Each is written here once — the message (uvicorn-like console
// text, which people read and which must not change under them), the
// regular expression that matches that text, and the fields the same entry
// carries with --log-format json. Tools start demo with JSON logs and read
// the fields; the expressions are for tests and for output only a person
// would otherwise read (a bench's servers log to the console, as users run
// them).

// Event says what a JSON log entry reports (the FieldEvent field). Entries
// without one are for people only.
type Event string

const (
	// EventRunning: a server serves and says where — `demo serve`'s
	// master once every worker is ready, `demo external`, `demo baseline`.
	// Fields: url.
	EventRunning Event = "running"
	// EventWorkerStarted: the master started a worker process (it is not
	// ready yet). Fields: worker, pid.
	EventWorkerStarted Event = "worker_started"
	// EventWorkerReady: a worker's loop runs and its listener is
	// registered. Fields: worker.
	EventWorkerReady Event = "worker_ready"
	// EventRequestStarted: an app route began a request (for a `def` route,
	// once a pool thread took it). Fields: request_id, worker.
	EventRequestStarted Event = "request_started"
	// EventRequestFinished: the request's steps are done; the response
	// follows. Fields: request_id, worker.
	EventRequestFinished Event = "request_finished"
	// EventStalling: the worker's blocked-loop detector, once the loop has
	// been blocked for --slow-callback, naming the culprit. Fields: stall_s
	// (so far), cause, request_id and step when known, culprit, worker.
	EventStalling Event = "stalling"
	// EventStall: the same stall once the loop runs again, with its whole
	// length. Fields: stall_s, cause, request_id and step when known,
	// worker.
	EventStall Event = "stall"
	// EventWorkerStalling: the master's reminder, every few seconds, that
	// a worker's loop is still blocked, stall_s so far. Fields: worker,
	// stall_s, and cause and request_id when the detector named them.
	EventWorkerStalling Event = "worker_stalling"
	// EventWorkerStall: the worker's loop beats again after stall_s.
	// Fields: worker, stall_s.
	EventWorkerStall Event = "worker_stall"
)

// Keys of the fields JSON log entries carry beside zap's own (time, level,
// logger, msg).
const (
	FieldEvent     = "event"
	FieldURL       = "url"        // where a server serves: http://127.0.0.1:8000, unix:/path
	FieldWorker    = "worker"     // which worker: "2/4", its index (from 1) of how many (WorkerName)
	FieldPID       = "pid"        // a worker's process id
	FieldRequestID = "request_id" // the request's id, also its X-Request-ID header
	FieldStall     = "stall_s"    // how long a loop was blocked, in seconds
	FieldCause     = "cause"      // what the loop was running: "GET /", "start-up"
	FieldStep      = "step"       // the route's step it ran: "routes./x steps[2] sleep blocking"
	FieldCulprit   = "culprit"    // where it was stuck: "worker.(*app).mixed → … → time.Sleep"
)

// LogEntry is one JSON log line, as tools read it.
type LogEntry struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Logger    string    `json:"logger"`
	Msg       string    `json:"msg"`
	Event     Event     `json:"event"`
	URL       string    `json:"url"`
	Worker    string    `json:"worker"`
	PID       int       `json:"pid"`
	RequestID string    `json:"request_id"`
	StallS    float64   `json:"stall_s"`
	Cause     string    `json:"cause"`
	Step      string    `json:"step"`
	Culprit   string    `json:"culprit"`
}

// ParseLogEntry decodes a JSON log line. It reports false for anything
// else — a console line, a panic, a usage error — which is then text for
// an error message.
func ParseLogEntry(line string) (LogEntry, bool) {
	if !strings.HasPrefix(line, "{") {
		return LogEntry{}, false // cheap: most lines a tool skips are not JSON
	}
	var e LogEntry
	err := json.Unmarshal([]byte(line), &e)
	// A field of ours that some other line uses for another type is
	// skipped, not the whole line.
	var wrongType *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &wrongType) || e.Msg == "" || e.Time.IsZero() {
		return LogEntry{}, false
	}
	return e, true
}

// WorkerIndex is the index of the worker the entry is about (its Worker
// field's first number); 0 if it names none.
func (e LogEntry) WorkerIndex() int {
	index, _, _ := strings.Cut(e.Worker, "/")
	n, err := strconv.Atoi(index)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// WorkerName names worker index of total, as the master's lines, the
// worker's command line (`demo worker 2/4`) and FieldWorker do: "2/4".
func WorkerName(index, total int) string { return strconv.Itoa(index) + "/" + strconv.Itoa(total) }

// Stall is StallS as a duration, to the nanosecond it was written with.
func (e LogEntry) Stall() time.Duration {
	return time.Duration(math.Round(e.StallS * float64(time.Second)))
}

// Names servers give themselves in their running lines.
const (
	ServeName    = "demo"
	ExternalName = "demo external"
	BaselineName = "demo baseline"
)

// RunningMsg is a server's readiness line, uvicorn's words:
// "demo running on http://127.0.0.1:8000 (Press CTRL+C to quit)"; notes
// come first in the parentheses: "(delay 2s, Press CTRL+C to quit)".
func RunningMsg(name, url string, notes ...string) string {
	return name + " running on " + url + " (" + strings.Join(append(notes, "Press CTRL+C to quit"), ", ") + ")"
}

// RunningLine matches the running line of the server called name (one of
// the names above); the URL is its first group.
func RunningLine(name string) *regexp.Regexp {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + ` running on (\S+) \(`)
}

// WorkerStartedMsg is the master's line once it started worker ("1/2")
// as process pid: "Started server process [4242] (worker 1/2)", uvicorn's
// words.
func WorkerStartedMsg(pid int, worker string) string {
	return fmt.Sprintf("Started server process [%d] (worker %s)", pid, worker)
}

// WorkerStartedLine matches WorkerStartedMsg for worker ("1/2", any for
// ""); the groups are the pid and the worker.
func WorkerStartedLine(worker string) *regexp.Regexp {
	w := `(\d+/\d+)`
	if worker != "" {
		w = "(" + regexp.QuoteMeta(worker) + ")"
	}
	return regexp.MustCompile(`Started server process \[(\d+)\] \(worker ` + w + `\)`)
}

// WorkerReadyMsg is a worker's line once it serves: "Worker 1/2 ready,
// mode mixed (loop thread demo-worker-1)".
func WorkerReadyMsg(index, total int, serving, thread string) string {
	return fmt.Sprintf("Worker %d/%d ready, %s (loop thread %s)", index, total, serving, thread)
}

// WorkerReadyLine matches worker index of total's ready line; 0 for either
// matches any, and the two are its groups.
func WorkerReadyLine(index, total int) *regexp.Regexp {
	num := func(n int) string {
		if n == 0 {
			return `(\d+)`
		}
		return "(" + strconv.Itoa(n) + ")"
	}
	return regexp.MustCompile(`Worker ` + num(index) + `/` + num(total) + ` ready`)
}

// The article's lines a request logs, in order: started, one per call,
// finished. They are appended into the caller's buffer: a worker logs them
// on its event loop for every request.
const (
	StartedText  = ": started processing"
	FinishedText = ": finished!"
)

// AppendStarted appends `<id>: started processing`.
func AppendStarted(b []byte, id string) []byte { return append(append(b, id...), StartedText...) }

// AppendFinished appends `<id>: finished!`.
func AppendFinished(b []byte, id string) []byte { return append(append(b, id...), FinishedText...) }

// AppendCall appends call n's line, `<id> <n>: <Response [<status>]>`, as
// the Python clients print a response: requests the bare code ("200"),
// httpx the code and reason ("200 OK").
func AppendCall(b []byte, id string, n int, status string) []byte {
	b = append(b, id...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ": <Response ["...)
	b = append(b, status...)
	return append(b, "]>"...)
}

// AppendLogStep appends line i of a log step of n: `<id>: log line <i> of <n>`.
func AppendLogStep(b []byte, id string, i, n int) []byte {
	b = append(b, id...)
	b = append(b, ": log line "...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, " of "...)
	return strconv.AppendInt(b, int64(n), 10)
}

// requestID matches a request id (a UUID) in a line.
const requestID = `[0-9a-f-]{36}`

// idPattern is id quoted, or any id as a group when id is "".
func idPattern(id string) string {
	if id == "" {
		return "(" + requestID + ")"
	}
	return "(" + regexp.QuoteMeta(id) + ")"
}

// StartedLine matches request id's started line, any request's for "";
// the id is the first group.
func StartedLine(id string) *regexp.Regexp {
	return regexp.MustCompile(idPattern(id) + regexp.QuoteMeta(StartedText))
}

// FinishedLine matches request id's finished line, any request's for "".
func FinishedLine(id string) *regexp.Regexp {
	return regexp.MustCompile(idPattern(id) + regexp.QuoteMeta(FinishedText))
}

// CallLine matches the line of request id's call n (any request's for
// "") answered with status ("200", "200 OK"; any for ""); the id and the
// status are its groups.
func CallLine(id string, n int, status string) *regexp.Regexp {
	st := `[^\]]*`
	if status != "" {
		st = regexp.QuoteMeta(status)
	}
	return regexp.MustCompile(idPattern(id) + ` ` + strconv.Itoa(n) + `: <Response \[(` + st + `)\]>`)
}

// LogStepLine matches line i of n of a log step of request id (any
// request's for "").
func LogStepLine(id string, i, n int) *regexp.Regexp {
	return regexp.MustCompile(idPattern(id) + `: log line ` + strconv.Itoa(i) + ` of ` + strconv.Itoa(n) + `\b`)
}

// RequestLabel is what a worker's loop is doing while it runs a request's
// step, as the blocked-loop detector names it: "GET / (request <id>)".
func RequestLabel(route, id string) string { return route + " (request " + id + ")" }

// SplitRequestLabel undoes RequestLabel: the route and the request's id;
// a label of no request ("start-up") comes back whole, with no id.
func SplitRequestLabel(label string) (cause, id string) {
	rest, ok := strings.CutSuffix(label, ")")
	if !ok {
		return label, ""
	}
	i := strings.LastIndex(rest, " (request ")
	if i < 0 {
		return label, ""
	}
	return rest[:i], rest[i+len(" (request "):]
}

// Stall reports of a worker's blocked-loop detector; label is what the loop
// runs (a RequestLabel, or "start-up", "a loop callback").

// StallMsg is the line once the stall ended: "event loop blocked 1.21s by
// GET / (request <id>)".
func StallMsg(d time.Duration, label string) string {
	return fmt.Sprintf("event loop blocked %s by %s", d.Round(10*time.Millisecond), label)
}

// StallingMsg is the detector's first report, while the loop is still
// blocked: "event loop blocked for 103ms so far by GET / (request <id>) at
// routes./ steps[1] call blocking: worker.(*app).mixed → … → net.Dial".
func StallingMsg(d time.Duration, label, at string) string {
	return fmt.Sprintf("event loop blocked for %s so far by %s at %s", d.Round(time.Millisecond), label, at)
}

// WorkerStallingMsg is the master's reminder that a worker's loop is
// still blocked, by label if the detector named it: "worker 1/2 [4242]:
// event loop still blocked after 3.0s by GET / (request <id>)".
func WorkerStallingMsg(worker string, pid int, d time.Duration, label string) string {
	msg := fmt.Sprintf("worker %s [%d]: event loop still blocked after %.1fs", worker, pid, d.Seconds())
	if label != "" {
		msg += " by " + label
	}
	return msg
}

// WorkerStallMsg is its line once the worker beats again after a stall
// the detector did not report: "worker 1/2 [4242]: event loop was blocked
// for 3.2s".
func WorkerStallMsg(worker string, pid int, d time.Duration) string {
	return fmt.Sprintf("worker %s [%d]: event loop was blocked for %.1fs", worker, pid, d.Seconds())
}

// StallLine matches StallMsg for a request to route with id; "" for
// either matches any (and any id or none), and each is a group, after the
// duration: the route (or the whole label of no request), the id (empty
// for none).
func StallLine(route, id string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)event loop blocked (\S+) by ` + labelPattern(route, id) + `$`)
}

// StallingLine matches StallingMsg as StallLine matches StallMsg; the last
// group is where the loop is stuck.
func StallingLine(route, id string) *regexp.Regexp {
	return regexp.MustCompile(`event loop blocked for (\S+) so far by ` + labelPattern(route, id) + ` at (.*)`)
}

// WorkerStallingLine matches WorkerStallingMsg for worker ("1/2", any for
// "") and pid (any for 0); the groups are the worker, the pid and the
// seconds.
func WorkerStallingLine(worker string, pid int) *regexp.Regexp {
	return regexp.MustCompile(workerPattern(worker, pid) + `event loop still blocked after (\d+\.\d)s`)
}

// WorkerStallLine matches WorkerStallMsg as WorkerStallingLine matches
// WorkerStallingMsg.
func WorkerStallLine(worker string, pid int) *regexp.Regexp {
	return regexp.MustCompile(workerPattern(worker, pid) + `event loop was blocked for (\d+\.\d)s`)
}

func workerPattern(worker string, pid int) string {
	w, p := `(\S+)`, `(\d+)`
	if worker != "" {
		w = "(" + regexp.QuoteMeta(worker) + ")"
	}
	if pid != 0 {
		p = "(" + strconv.Itoa(pid) + ")"
	}
	return `worker ` + w + ` \[` + p + `\]: `
}

// labelPattern matches a label as two groups, the route and the request
// id: route "" is any, id "" any id or none.
func labelPattern(route, id string) string {
	r := `(.*?)`
	if route != "" {
		r = "(" + regexp.QuoteMeta(route) + ")"
	}
	if id == "" {
		return r + `(?: \(request (` + requestID + `)\))?`
	}
	return r + ` \(request (` + regexp.QuoteMeta(id) + `)\)`
}
