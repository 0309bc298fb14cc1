package contract

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Fields are the fields of a log entry tools read, as each event of
// logs.go carries them. With --log-format json they are keys of the entry,
// beside msg; the console format (package logs) leaves them out, so that
// its lines stay uvicorn's, byte for byte. Give them on the entry
// (logger.Info(msg, RunningFields(url))), not to Logger.With.
type Fields []zap.Field

// MarshalLogObject writes the fields into the entry.
func (fs Fields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, f := range fs {
		f.AddTo(enc)
	}
	return nil
}

// ForTools marks the fields as meant for tools, not people: the console
// format leaves out an inline field whose value has this method.
func (Fields) ForTools() {}

// field is fs as the one zap field an entry takes.
func (fs Fields) field() zap.Field { return zap.Inline(fs) }

func event(ev Event) zap.Field { return zap.String(FieldEvent, string(ev)) }

// RunningFields are EventRunning's: where the server serves.
func RunningFields(url string) zap.Field {
	return Fields{event(EventRunning), zap.String(FieldURL, url)}.field()
}

// WorkerStartedFields are EventWorkerStarted's: worker (WorkerName) and
// its process id.
func WorkerStartedFields(worker string, pid int) zap.Field {
	return Fields{event(EventWorkerStarted), zap.String(FieldWorker, worker), zap.Int(FieldPID, pid)}.field()
}

// WorkerReadyFields are EventWorkerReady's.
func WorkerReadyFields(worker string) zap.Field {
	return Fields{event(EventWorkerReady), zap.String(FieldWorker, worker)}.field()
}

// RequestFields are those of a request's line, ev being
// EventRequestStarted or EventRequestFinished.
func RequestFields(ev Event, id, worker string) zap.Field {
	return Fields{event(ev), zap.String(FieldRequestID, id), zap.String(FieldWorker, worker)}.field()
}

// StallFields are those of a stall report (EventStalling, EventStall,
// EventWorkerStalling, EventWorkerStall): how long, on which worker, and
// what the loop ran — label, a RequestLabel or another, split into cause
// and request_id — at which step and where, each left out when unknown.
func StallFields(ev Event, worker string, d time.Duration, label, step, culprit string) zap.Field {
	fs := Fields{event(ev), zap.String(FieldWorker, worker), zap.Float64(FieldStall, d.Seconds())}
	cause, id := SplitRequestLabel(label)
	for _, f := range [...]struct{ key, value string }{{FieldCause, cause}, {FieldRequestID, id}, {FieldStep, step}, {FieldCulprit, culprit}} {
		if f.value != "" {
			fs = append(fs, zap.String(f.key, f.value))
		}
	}
	return fs.field()
}
