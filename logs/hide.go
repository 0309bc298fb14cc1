package logs

import (
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// forTools is what package contract's Fields have: fields for tools,
// which the JSON format writes and the console format leaves out, so that
// its lines stay uvicorn's whatever tools need.
type forTools interface{ ForTools() }

// isForTools reports whether f carries fields for tools.
func isForTools(f zapcore.Field) bool {
	if f.Type != zapcore.InlineMarshalerType {
		return false
	}
	_, ok := f.Interface.(forTools)
	return ok
}

// hideToolFields is the console encoder: it drops the fields for tools
// before the encoder it wraps sees them.
type hideToolFields struct{ zapcore.Encoder }

func (e hideToolFields) Clone() zapcore.Encoder { return hideToolFields{e.Encoder.Clone()} }

func (e hideToolFields) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	for i, f := range fields {
		if isForTools(f) {
			kept := append(fields[:i:i], fields[i+1:]...)
			return e.EncodeEntry(ent, kept) // there may be more
		}
	}
	return e.Encoder.EncodeEntry(ent, fields)
}
