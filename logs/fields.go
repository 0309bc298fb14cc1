package logs

import (
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// ForTools carries fields that tools read (the keys package contract
// names: an event, a URL, a request id, how long a loop stalled) and people
// need not see. The JSON format writes them as keys of the entry, beside
// msg; the console format leaves them out, so that its lines stay
// uvicorn's, byte for byte, with or without them. Give it on the entry
// (logger.Info(msg, ForTools(...))), not to Logger.With.
func ForTools(fields ...zap.Field) zap.Field { return zap.Inline(toolFields(fields)) }

type toolFields []zap.Field

func (fs toolFields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, f := range fs {
		f.AddTo(enc)
	}
	return nil
}

// isToolFields reports whether f was made by ForTools.
func isToolFields(f zapcore.Field) bool {
	if f.Type != zapcore.InlineMarshalerType {
		return false
	}
	_, ok := f.Interface.(toolFields)
	return ok
}

// hideToolFields is the console encoder: it drops ForTools fields before
// the encoder it wraps sees them.
type hideToolFields struct{ zapcore.Encoder }

func (e hideToolFields) Clone() zapcore.Encoder { return hideToolFields{e.Encoder.Clone()} }

func (e hideToolFields) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	for i, f := range fields {
		if isToolFields(f) {
			kept := append(fields[:i:i], fields[i+1:]...)
			return e.EncodeEntry(ent, kept) // there may be more
		}
	}
	return e.Encoder.EncodeEntry(ent, fields)
}
