package eventloop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
)

// Chunked request bodies (RFC 9112 §7.1), read the way net/http's server
// reads them: its decoder, internal to net/http, is the authority on what
// is valid, and chunkScanner applies the same rules as the bytes arrive,
// so that a bad body is refused as soon as net/http would refuse it.

const (
	// maxChunkLine is net/http's server's read buffer: a chunk-size line,
	// CRLF included, must fit in it.
	maxChunkLine = 4096
	// maxChunkExcess is how much chunk overhead (size lines beyond 16 bytes
	// and twice their data) net/http's decoder tolerates before it calls a
	// body malicious: many tiny chunks or long extensions.
	maxChunkExcess = 16 << 10
)

// chunkScanner finds where a chunked body ends while its bytes trickle in,
// scanning each byte once; net/http then decodes the complete body in one
// pass. Re-running the decoder on every arrival would cost quadratic time
// against a client that sends one byte at a time.
type chunkScanner struct {
	pos          int   // raw body bytes scanned so far
	state        uint8 // chunkSize, chunkData, chunkCRLF or chunkTrailer
	left         int64 // chunk data still to skip
	data         int64 // decoded body bytes announced so far
	excess       int64 // overhead beyond what net/http allows for free
	trailerStart int
}

const (
	chunkSize = iota
	chunkData
	chunkCRLF
	chunkTrailer
)

// scan continues over body (the raw bytes after the header block). It returns
// the length of the complete chunked body, or -1 if more bytes are needed, or
// an error status with its message.
func (cs *chunkScanner) scan(body []byte, maxBody int64, maxTrailer int) (end, status int, msg string) {
	for {
		switch cs.state {
		case chunkSize:
			i := bytes.IndexByte(body[cs.pos:], '\n')
			if i < 0 {
				if len(body)-cs.pos >= maxChunkLine {
					return 0, http.StatusBadRequest, "chunk size line too long"
				}
				return -1, 0, ""
			}
			line := body[cs.pos : cs.pos+i+1]
			if len(line) > maxChunkLine {
				return 0, http.StatusBadRequest, "chunk size line too long"
			}
			// RFC 9112 §7.1: chunk lines end in CRLF, never a bare LF
			// (errata 7633), and hold no other CR.
			if cr := bytes.IndexByte(line, '\r'); cr < 0 || cr != len(line)-2 {
				return 0, http.StatusBadRequest, "malformed chunk size line"
			}
			line = line[:len(line)-2]
			cs.excess += int64(len(line)) + 2
			line = bytes.TrimRight(line, " \t")
			if j := bytes.IndexByte(line, ';'); j >= 0 {
				line = line[:j] // extensions are ignored (RFC 9112 §7.1.1)
			}
			size, ok := parseChunkSize(line)
			if !ok {
				return 0, http.StatusBadRequest, "invalid chunk size"
			}
			if size > uint64(maxBody-cs.data) {
				return 0, http.StatusRequestEntityTooLarge, "request body too large"
			}
			if cs.excess = max(cs.excess-16-2*int64(size), 0); cs.excess > maxChunkExcess {
				return 0, http.StatusBadRequest, "chunked encoding contains too much non-data"
			}
			cs.pos += i + 1
			if size == 0 {
				cs.state, cs.trailerStart = chunkTrailer, cs.pos
				continue
			}
			cs.data += int64(size)
			cs.left = int64(size)
			cs.state = chunkData
		case chunkData:
			avail := int64(len(body) - cs.pos)
			if avail < cs.left {
				cs.pos += int(avail)
				cs.left -= avail
				return -1, 0, ""
			}
			cs.pos += int(cs.left)
			cs.left = 0
			cs.state = chunkCRLF
		case chunkCRLF:
			// The data must end exactly where its size line said: a chunk
			// longer than announced is refused now, not once more bytes
			// happen to line up.
			if len(body)-cs.pos < 2 {
				return -1, 0, ""
			}
			if body[cs.pos] != '\r' || body[cs.pos+1] != '\n' {
				return 0, http.StatusBadRequest, "chunk data does not end where its size says"
			}
			cs.pos += 2
			cs.state = chunkSize
		case chunkTrailer:
			if cs.pos == cs.trailerStart {
				done, status, msg := trailerAllowed(body[cs.pos:])
				if status != 0 || done <= 0 {
					return done, status, msg
				}
				if done == 2 {
					return cs.pos + 2, 0, ""
				}
			}
			i := bytes.IndexByte(body[cs.pos:], '\n')
			if i < 0 {
				if len(body)-cs.trailerStart > maxTrailer {
					return 0, http.StatusRequestHeaderFieldsTooLarge, "chunked trailer too large"
				}
				return -1, 0, ""
			}
			line := body[cs.pos : cs.pos+i]
			cs.pos += i + 1
			if cs.pos-cs.trailerStart > maxTrailer {
				return 0, http.StatusRequestHeaderFieldsTooLarge, "chunked trailer too large"
			}
			if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
				return cs.pos, 0, ""
			}
		}
	}
}

// trailerAllowed decides on what follows the last chunk the way net/http's
// body reader does: CRLF alone ends the body (done is 2); anything else is
// a trailer, read only once an empty CRLF line ("\r\n\r\n") shows up
// within its 4 KiB read buffer (done is 1), which bounds a trailer that
// never ends. The bytes that show it may belong to the next request.
func trailerAllowed(after []byte) (done, status int, msg string) {
	switch {
	case len(after) < 2:
		return -1, 0, ""
	case after[0] == '\r' && after[1] == '\n':
		return 2, 0, ""
	case bytes.Contains(after[:min(len(after), maxChunkLine)], []byte("\r\n\r\n")):
		return 1, 0, ""
	case len(after) >= maxChunkLine:
		return 0, http.StatusBadRequest, "suspiciously long trailer after chunked body"
	}
	return -1, 0, ""
}

// parseChunkSize parses a chunk size as net/http does: 1 to 16 hex digits.
func parseChunkSize(line []byte) (size uint64, ok bool) {
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	for _, b := range line {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'f':
			d = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, false
		}
		size = size<<4 | uint64(d)
	}
	return size, true
}

// decodeChunked decodes a complete chunked body (as found by chunkScanner)
// with net/http's decoder. Its trailer fields are merged into r.Trailer.
func (s *Server) decodeChunked(r *Request, raw []byte, size int64) ([]byte, error) {
	s.bytesR.Reset(raw)
	s.br.Reset(&s.bytesR)
	body := make([]byte, size)
	cr := httputil.NewChunkedReader(s.br)
	if _, err := io.ReadFull(cr, body); err != nil {
		return nil, fmt.Errorf("chunked body: %w", err)
	}
	var one [1]byte
	if n, err := cr.Read(one[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("malformed chunked encoding")
		}
		return nil, fmt.Errorf("chunked body: %w", err)
	}
	// What follows the last chunk: CRLF alone, or trailer fields up to an
	// empty line, read as net/http's body reader reads them.
	if p, _ := s.br.Peek(2); string(p) != "\r\n" {
		hdr, err := textproto.NewReader(s.br).ReadMIMEHeader()
		if err != nil {
			return nil, fmt.Errorf("chunked trailer: %w", err)
		}
		if s.br.Buffered() != 0 || s.bytesR.Len() != 0 {
			return nil, errors.New("malformed chunked trailer")
		}
		if r.Trailer == nil {
			r.Trailer = make(http.Header, len(hdr))
		}
		for k, v := range hdr {
			r.Trailer[k] = v
		}
	}
	if len(body) == 0 {
		return nil, nil
	}
	return body, nil
}
