package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"demo/eventloop"
)

// state is where a call is. Transitions only move forward:
// resolving -> connecting (-> connecting on the next address) -> writing ->
// reading -> done, and any state -> done on error, timeout or cancel.
type state uint8

const (
	stateResolving state = iota
	stateConnecting
	stateWriting
	stateReading
	stateDone
)

// call is one GET in flight. It is kept small (a few hundred bytes plus the
// response received so far) so that thousands can wait at once.
type call struct {
	c       *Client
	t       *target
	cb      func(*Response, error)
	timeout time.Duration
	timer   *eventloop.Timer

	state    state
	deferCB  bool // inside Get or cancel: post the callback instead of calling it
	addrs    []netip.Addr
	next     int            // next address to try
	peer     netip.AddrPort // address being connected to
	firstErr error          // first connect failure: the one worth reporting
	fd       int
	nodelay  bool // TCP_NODELAY is set

	out     []byte  // request bytes a short write left over
	in      []byte  // response bytes so far, once they span reads
	scan    int     // header phase: where to resume looking for a blank line
	sawLine bool    // header phase: the status line was checked
	frame   framing // what the response still needs, once its header is parsed
}

func (k *call) cancel() {
	if k.state == stateDone {
		return
	}
	// Like cancelling an asyncio task: the caller is in the middle of
	// something, so the callback comes later.
	k.deferCB = true
	k.fail(context.Canceled)
}

func (k *call) onTimeout() {
	k.timer = nil // fired
	if k.state == stateDone {
		return
	}
	k.fail(fmt.Errorf("%s: %w after %v", k.phase(), ErrTimeout, k.timeout))
}

// phase names what the call was doing, for timeout messages.
func (k *call) phase() string {
	switch k.state {
	case stateResolving:
		return "lookup " + k.t.name
	case stateConnecting:
		return "connect " + k.peer.String()
	case stateWriting:
		return "write request"
	default:
		return "read response"
	}
}

// dial starts connecting to the next address, falling back to the one after
// when a connect fails at once; with none left the call fails with the first
// error, which is the one about the preferred address.
func (k *call) dial() {
	k.state = stateConnecting
	for k.next < len(k.addrs) {
		k.peer = netip.AddrPortFrom(k.addrs[k.next], k.t.port)
		k.next++
		err := k.connect()
		if err == nil {
			return // the request is out, or waits for the connection
		}
		if k.firstErr == nil {
			k.firstErr = err
		}
	}
	k.fail(k.firstErr)
}

// connect opens a non-blocking socket to k.peer, registers it with the
// loop, and writes the request if the connection is already up. An error
// means nothing was sent, so dial may try the next address.
//
// Writing at once is what makes a call cheap on loopback, where connect(2)
// runs the whole handshake before it returns EINPROGRESS: the request goes
// out straight away and the socket needs one registration, for EPOLLIN,
// instead of waiting a loop iteration for EPOLLOUT, asking SO_ERROR and
// switching the registration to EPOLLIN. During a burst that wait is long:
// EPOLLOUT queues behind every fd already ready. A socket still connecting
// refuses the write with EAGAIN and completes in onEvent as before; one
// whose connect already failed reports the failure (ECONNREFUSED) from the
// write.
func (k *call) connect() error {
	ip := k.peer.Addr()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa4 := &k.c.sa4 // Connect only reads it: one per client will do
		sa4.Port, sa4.Addr = int(k.t.port), ip.As4()
		sa = sa4
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(k.t.port), Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	k.fd, k.nodelay = fd, false
	testHookSocket(+1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		k.closeFD()
		return fmt.Errorf("connect %s: %w", k.peer, err)
	}
	// Registered before the write, so that a failure here still leaves
	// the request unsent.
	if err := k.c.l.Add(fd, eventloop.EventRead, k.onEvent); err != nil {
		k.closeFD()
		return fmt.Errorf("connect %s: %w", k.peer, err)
	}
	switch done, err := k.write(k.c.buildRequest(k), true); {
	case done:
		testHookEarlyWrite()
		k.state = stateReading
		return nil
	case err == unix.EAGAIN:
		// Nothing went out: still connecting. onEvent completes the
		// connect and then writes k.out.
	case err != nil:
		k.closeFD()
		return fmt.Errorf("connect %s: %w", k.peer, err)
	default: // connected, but only part of the request went out
		k.state = stateWriting
	}
	if err := k.c.l.Modify(fd, eventloop.EventWrite); err != nil {
		k.fail(err)
	}
	return nil
}

// onEvent is the one readiness handler of k's socket.
func (k *call) onEvent(uint32) {
	switch k.state {
	case stateConnecting:
		k.connected()
	case stateWriting:
		k.flush()
	case stateReading:
		k.read()
	}
}

func (k *call) connected() {
	soErr, err := unix.GetsockoptInt(k.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soErr != 0 {
		err = unix.Errno(soErr)
	}
	if err != nil {
		k.closeFD()
		if k.firstErr == nil {
			k.firstErr = fmt.Errorf("connect %s: %w", k.peer, err)
		}
		k.dial()
		return
	}
	k.state = stateWriting
	k.flush()
}

func (c *Client) buildRequest(k *call) []byte {
	b := c.reqBuf[:0]
	b = append(b, "GET "...)
	b = append(b, k.t.uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, k.t.host...)
	b = append(b, "\r\nUser-Agent: "...)
	b = append(b, c.ua...)
	b = append(b, "\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
	if cap(b) <= maxFreeBufCap { // a huge URL must not pin its buffer
		c.reqBuf = b
	}
	return b
}

// write sends req and reports whether all of it went out; otherwise k.out
// holds the rest, copied if req is the client's shared request buffer
// (shared) rather than k.out itself. EAGAIN is the only error that leaves
// anything to retry.
func (k *call) write(req []byte, shared bool) (done bool, err error) {
	n, errno := eventloop.Send(k.fd, req) // a peer that already closed: EPIPE, no SIGPIPE
	switch errno {
	case 0:
	case unix.EAGAIN, unix.EINTR:
		err = unix.EAGAIN
	default:
		return false, errno
	}
	n = max(n, 0)
	if n == len(req) {
		k.out = nil
		return true, nil
	}
	if k.out = req[n:]; shared {
		k.out = bytes.Clone(k.out)
	}
	if n == 0 {
		return false, err
	}
	testHookShortWrite()
	if !k.nodelay {
		// Nagle never holds back the first write of a connection (nothing
		// is in flight yet), so TCP_NODELAY is set only when the rest of
		// a short one would otherwise wait for the ACK of what went out.
		k.nodelay = true
		if err := unix.SetsockoptInt(k.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return false, fmt.Errorf("setsockopt TCP_NODELAY: %w", err)
		}
	}
	return false, nil
}

// flush writes what the request's first write left in k.out: all of it
// when the connect completed in onEvent, or the rest of a short write.
func (k *call) flush() {
	done, err := k.write(k.out, false)
	switch {
	case err == unix.EAGAIN, err == nil && !done:
		return // still registered for EPOLLOUT
	case err != nil:
		k.fail(fmt.Errorf("write request: %w", err))
		return
	}
	k.state = stateReading
	if err := k.c.l.Modify(k.fd, eventloop.EventRead); err != nil {
		k.fail(err)
	}
}

func (k *call) read() {
	n, err := eventloop.Recv(k.fd, k.c.scratch)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if err != 0 {
		k.fail(fmt.Errorf("read response: %w", err))
		return
	}
	k.consume(k.c.scratch[:n], n == 0)
}

// consume takes newly read bytes (eof: the server closed) and finishes the
// call once the response is complete, malformed or too large. Parsing is
// attempted only when the bytes so far could make a difference, so a
// response that trickles in is not re-parsed on every read.
func (k *call) consume(data []byte, eof bool) {
	buf := data
	if len(k.in) > 0 {
		k.in = append(k.in, data...)
		buf = k.in
	}
	if eof || k.mayBeComplete(buf) {
		testHookParse()
		resp, f, err := k.c.parser.parse(buf, eof)
		switch {
		case err == nil:
			k.succeed(resp)
			return
		case errors.Is(err, io.ErrUnexpectedEOF):
			k.fail(fmt.Errorf("read response: connection closed after %d bytes: %w", len(buf), err))
			return
		case err != errIncomplete:
			k.fail(fmt.Errorf("parse response: %w", err))
			return
		}
		k.frame = f
		if f.headerLen > 0 && f.bodyLen >= 0 && int64(f.headerLen)+f.bodyLen > k.c.max {
			k.fail(fmt.Errorf("response of %d bytes exceeds the limit of %d", int64(f.headerLen)+f.bodyLen, k.c.max))
			return
		}
	}
	if int64(len(buf)) > k.c.max {
		k.fail(fmt.Errorf("response exceeds the limit of %d bytes", k.c.max))
		return
	}
	if len(k.in) == 0 { // buf is the shared scratch: keep a copy
		k.in = append(k.c.getBuf(), buf...)
	}
}

// mayBeComplete reports whether buf could now hold a complete response
// (or reveal a malformed one), going by what earlier parses learnt.
func (k *call) mayBeComplete(buf []byte) bool {
	f := &k.frame
	switch {
	case f.headerLen == 0:
		// Parse at the first complete line, to reject a non-HTTP peer at
		// once, and then whenever a blank line may end a header block.
		from := max(k.scan-2, 0)
		k.scan = len(buf)
		if !k.sawLine {
			k.sawLine = bytes.IndexByte(buf[from:], '\n') >= 0
			return k.sawLine
		}
		return bytes.Contains(buf[from:], []byte("\n\n")) || bytes.Contains(buf[from:], []byte("\n\r\n"))
	case f.chunked:
		// A chunked body ends with an empty line (after the last chunk and
		// any trailers). Data after it would delay completion until EOF,
		// which a "Connection: close" server sends anyway.
		return bytes.HasSuffix(buf, []byte("\n\n")) || bytes.HasSuffix(buf, []byte("\n\r\n"))
	case f.bodyLen >= 0:
		return int64(len(buf)) >= int64(f.headerLen)+f.bodyLen
	default:
		return false // body delimited by EOF
	}
}

func (k *call) succeed(resp *Response) {
	cb := k.finish()
	cb(resp, nil) // consume runs in a loop callback, never inside Get
}

func (k *call) fail(err error) {
	cb := k.finish()
	err = &callError{url: k.t.url, err: err}
	if k.deferCB {
		k.c.l.Post(func() { cb(nil, err) })
		return
	}
	cb(nil, err)
}

// finish releases everything the call holds, exactly once, and returns the
// callback to run.
func (k *call) finish() func(*Response, error) {
	k.state = stateDone
	if k.timer != nil {
		k.c.l.StopTimer(k.timer)
		k.timer = nil
	}
	k.closeFD()
	k.c.putBuf(k.in)
	k.in, k.out, k.addrs = nil, nil, nil
	cb := k.cb
	k.cb = nil
	return cb
}

func (k *call) closeFD() {
	if k.fd < 0 {
		return
	}
	_ = k.c.l.Discard(k.fd) // nothing to flush: a failed close still frees the fd
	k.fd = -1
	testHookSocket(-1)
}
