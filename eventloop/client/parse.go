package client

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"slices"
)

// max1xx mirrors net/http's Transport: informational responses a server
// may send before the real one.
const max1xx = 5

// errIncomplete means more bytes could change a parse's outcome.
var errIncomplete = errors.New("incomplete response")

// framing is what a parse learnt about a response still incomplete, so
// the caller can skip parses that cannot succeed yet.
type framing struct {
	headerLen int   // bytes up to the end of the final header block; 0 if not there yet
	bodyLen   int64 // declared Content-Length, or -1
	chunked   bool
}

// parseResponse parses the response in buf with net/http's parser. eof says
// the server closed the connection after buf. It returns the response once
// complete; errIncomplete (with what is known of the framing) while more
// bytes could change the outcome; io.ErrUnexpectedEOF if eof cut it short;
// or the parser's error for a malformed response. It never retains buf.
func parseResponse(buf []byte, eof bool) (*Response, framing, error) {
	var p parser
	return p.parse(buf, eof)
}

// parser keeps its bufio.Reader between parses; a Client owns one.
type parser struct {
	src feeder
	br  *bufio.Reader
}

// feeder serves buf to the parser and records whether the parser wanted
// more than buf holds: a parse that failed then is inconclusive.
type feeder struct {
	buf       []byte
	off       int
	eof       bool
	exhausted bool
}

func (f *feeder) Read(p []byte) (int, error) {
	if f.off < len(f.buf) {
		n := copy(p, f.buf[f.off:])
		f.off += n
		return n, nil
	}
	f.exhausted = true
	if f.eof {
		return 0, io.EOF
	}
	return 0, errIncomplete
}

func (p *parser) parse(buf []byte, eof bool) (*Response, framing, error) {
	p.src = feeder{buf: buf, eof: eof}
	if p.br == nil {
		p.br = bufio.NewReader(&p.src)
	} else {
		p.br.Reset(&p.src)
	}
	resp, f, err := p.parseFrom(p.br)
	exhausted := p.src.exhausted
	p.src = feeder{} // drop the reference to buf
	if err != nil && exhausted {
		if !eof {
			return nil, f, errIncomplete
		}
		return nil, f, io.ErrUnexpectedEOF
	}
	return resp, f, err
}

func (p *parser) parseFrom(br *bufio.Reader) (*Response, framing, error) {
	f := framing{bodyLen: -1}
	for informational := 0; ; informational++ {
		hr, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, f, err
		}
		// 1xx (but 101, which is final) precede the real response and
		// have no body.
		if hr.StatusCode >= 100 && hr.StatusCode < 200 && hr.StatusCode != http.StatusSwitchingProtocols {
			if informational == max1xx {
				return nil, f, errors.New("too many 1xx informational responses")
			}
			continue
		}
		f.headerLen = p.src.off - br.Buffered()
		f.bodyLen = hr.ContentLength
		f.chunked = slices.Contains(hr.TransferEncoding, "chunked")
		body, err := p.readBody(hr, f)
		if err != nil {
			return nil, f, err
		}
		return &Response{
			Proto:      hr.Proto,
			StatusCode: hr.StatusCode,
			Status:     hr.Status,
			Header:     hr.Header,
			Body:       body,
		}, f, nil
	}
}

func (p *parser) readBody(hr *http.Response, f framing) ([]byte, error) {
	switch {
	case hr.Body == http.NoBody || f.bodyLen == 0:
		return nil, nil
	case f.bodyLen > 0:
		// Check before allocating: the length is the server's claim.
		if f.bodyLen > int64(len(p.src.buf)-f.headerLen) {
			p.src.exhausted = true
			return nil, io.ErrUnexpectedEOF
		}
		body := make([]byte, f.bodyLen)
		_, err := io.ReadFull(hr.Body, body)
		return body, err
	case !f.chunked && !p.src.eof:
		// Delimited by EOF, which has not come yet.
		p.src.exhausted = true
		return nil, errIncomplete
	default:
		return io.ReadAll(hr.Body)
	}
}
