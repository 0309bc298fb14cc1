package external

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"demo/eventloop"
	"demo/setting"
)

// Fault is how the external API misbehaves on purpose (`--fault`), for
// teaching and for tests: what each of demo's modes answers when its
// upstream refuses, hangs, lies or trickles.
type Fault string

// The faults, in the order help text lists them. Each but refuse and hang
// happens once the request has waited out the delay, like an upstream
// that worked on it and then failed.
const (
	// Refuse closes each connection as soon as it is accepted, with a
	// reset (RST), without reading or answering anything.
	Refuse Fault = "refuse"
	// Hang reads the request and never answers.
	Hang Fault = "hang"
	// Garbage answers bytes that are not HTTP, then closes.
	Garbage Fault = "garbage"
	// Reset sends the response's headers and part of its body, then
	// resets the connection.
	Reset Fault = "reset"
	// EndlessBody answers 200 with a body that never ends.
	EndlessBody Fault = "endless-body"
	// Drip sends a correct 200 response one byte per second.
	Drip Fault = "drip"
	// Status500 answers 500 Internal Server Error.
	Status500 Fault = "status-500"
)

// Faults lists every fault.
var Faults = []Fault{Refuse, Hang, Garbage, Reset, EndlessBody, Drip, Status500}

// ParseFault accepts one of Faults.
func ParseFault(s string) (Fault, error) {
	for _, f := range Faults {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Faults))
	for i, f := range Faults {
		names[i] = string(f)
	}
	return "", setting.Errorf("Fault", "%q: want one of %s", s, strings.Join(names, ", "))
}

// spread decides which connections fail at a given rate, deterministically:
// the k-th connection accepted (over all loops) fails when ⌊k·rate⌋
// grows, so rate 0.5 alternates (answer, fault, answer, ...), 0.25 fails
// every fourth, and any n connections in a row hold ⌊n·rate⌋ or
// ⌈n·rate⌉ failures. Tests and demonstrations get the same run twice.
type spread struct {
	rate float64
	n    atomic.Uint64
}

func (s *spread) next() bool {
	k := float64(s.n.Add(1))
	// The epsilon keeps 10×0.1 at 1, not 0.9999….
	return math.Floor(k*s.rate+1e-9) > math.Floor((k-1)*s.rate+1e-9)
}

// Bytes of the faults' answers.
var (
	garbage        = []byte("\x00\xffthis is not HTTP\r\n\r\n")
	helloResponse  = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 25\r\nConnection: close\r\n\r\n" + `{"message":"Hello World"}`)
	resetResponse  = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 25\r\nConnection: close\r\n\r\n" + `{"message"`)
	status500      = []byte("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nConnection: close\r\n\r\nInternal Server Error")
	endlessHeader  = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
	endlessChunk   = bytes.Repeat([]byte(" "), 64<<10) // JSON allows any amount of whitespace
	badRequest     = []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n")
	headerTooLarge = []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	notFoundResp   = []byte("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\nConnection: close\r\n\r\n404 page not found\n")
	notAllowedResp = []byte("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\nConnection: close\r\n\r\nMethod Not Allowed\n")
)

const (
	maxFaultHeader = 16 << 10 // a larger request head gets 431
	// A reset waits for what was written to reach the client, checking
	// this often, but not longer than resetGiveUp.
	resetCheckEvery = 10 * time.Millisecond
	resetGiveUp     = time.Second
)

// dripInterval is how long drip waits between two bytes (a variable so a
// test need not wait a second per byte).
var dripInterval = time.Second

// faultListener accepts on one listening socket for a loop in fault mode.
// With a fault configured, connections are served here rather than by
// eventloop.Server, which has no way to misbehave: each either fails its
// way or, when the spread spares it, gets the API's usual answer after the
// delay. Everything runs on the loop: no goroutine per connection.
type faultListener struct {
	a     *api
	fd    int
	retry *eventloop.Timer // accepting paused after EMFILE and the like
}

func (a *api) listenFaulty(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	fl := &faultListener{a: a, fd: fd}
	if err := a.loop.Add(fd, eventloop.EventRead, fl.accept); err != nil {
		return err
	}
	a.faultListeners = append(a.faultListeners, fl)
	return nil
}

func (fl *faultListener) accept(uint32) {
	for range 100 {
		fd, _, err := unix.Accept4(fl.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			continue
		case err != nil:
			// Out of descriptors or memory: the listener stays readable,
			// so step back rather than spin.
			fl.a.log.Error("accept failed; pausing new connections for 100ms: " + err.Error())
			fl.a.loop.Remove(fl.fd)
			fl.retry = fl.a.loop.AfterFunc(100*time.Millisecond, func() {
				fl.retry = nil
				if err := fl.a.loop.Add(fl.fd, eventloop.EventRead, fl.accept); err != nil {
					fl.a.log.Error("re-register listener: " + err.Error())
				}
			})
			return
		}
		fl.a.newFaultConn(fd)
	}
}

// faultConn is one connection in fault mode. Its fields belong to the loop.
type faultConn struct {
	a     *api
	fd    int
	fault Fault  // "" for a connection the spread spared: the usual answer
	head  []byte // the request head so far
	got   bool   // the request is in: what comes next is ignored
	out   []byte // being written
	timer *eventloop.Timer
	ended bool // close once out is written

	headOnly bool // a HEAD request: the usual answer has no body
}

func (a *api) newFaultConn(fd int) {
	fault := Fault("")
	if a.spread.next() {
		fault = a.fault
	}
	if fault == Refuse {
		a.log.Debug("fault refuse: connection reset")
		resetClose(fd)
		return
	}
	c := &faultConn{a: a, fd: fd, fault: fault}
	if err := a.loop.Add(fd, eventloop.EventRead|eventloop.EventHangup, c.handle); err != nil {
		unix.Close(fd)
		return
	}
	a.faultConns[c] = struct{}{}
	c.timer = a.loop.AfterFunc(idleTimeout, c.close) // a request must come
}

// resetClose closes fd with a reset instead of a FIN: SO_LINGER with a
// zero timeout drops whatever is unsent and sends RST.
func resetClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

func (c *faultConn) handle(events uint32) {
	if c.fd < 0 {
		return
	}
	if events&(eventloop.EventRead|eventloop.EventHangup|eventloop.EventError) != 0 && !c.read() {
		return
	}
	if events&eventloop.EventWrite != 0 {
		c.write()
	}
}

// read takes what the client sent: the request head, then nothing more
// matters but a hang-up. It returns false once the connection is closed.
func (c *faultConn) read() bool {
	var buf [4096]byte
	for {
		n, err := unix.Read(c.fd, buf[:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			return true
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil || n == 0: // the client hung up (or reset)
			c.close()
			return false
		}
		if c.got {
			continue
		}
		c.head = append(c.head, buf[:n]...)
		if end := bytes.Index(c.head, []byte("\r\n\r\n")); end >= 0 {
			c.got = true
			c.request(c.head[:end+4])
			c.head = nil
			return c.fd >= 0
		}
		if len(c.head) > maxFaultHeader {
			c.got, c.head = true, nil
			c.respond(headerTooLarge)
			return c.fd >= 0
		}
	}
}

// request routes a complete request head like the usual API, then waits
// out the delay before the fault (or the usual answer).
func (c *faultConn) request(head []byte) {
	c.a.loop.StopTimer(c.timer)
	c.timer = nil
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	switch {
	case err != nil:
		c.respond(badRequest)
		return
	case req.URL.Path != "/":
		c.respond(notFoundResp)
		return
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		c.respond(notAllowedResp)
		return
	}
	if c.fault == Hang {
		c.a.log.Debug("fault hang: the request will never be answered")
		return // reads go on, to notice the client leave
	}
	c.headOnly = req.Method == http.MethodHead
	c.timer = c.a.loop.AfterFunc(c.a.delay, c.fire)
}

// fire ends the delay: the usual answer, or the fault.
func (c *faultConn) fire() {
	c.timer = nil
	if c.fault != "" {
		c.a.log.Debug("fault " + string(c.fault))
	}
	switch c.fault {
	case "":
		if c.headOnly {
			c.respond(helloResponse[:len(helloResponse)-len(helloWorld)])
		} else {
			c.respond(helloResponse)
		}
	case Status500:
		c.respond(status500)
	case Garbage:
		c.respond(garbage)
	case Reset:
		c.send(resetResponse)
		c.resetWhenSent(time.Now())
	case EndlessBody:
		c.send(endlessHeader)
	case Drip:
		c.drip(helloResponse)
	}
}

// respond writes b and closes the connection once it is out.
func (c *faultConn) respond(b []byte) {
	c.ended = true
	c.send(b)
}

// send writes b, the rest once the socket has room.
func (c *faultConn) send(b []byte) {
	c.out = b
	c.write()
}

func (c *faultConn) write() {
	for c.fd >= 0 {
		if len(c.out) == 0 {
			if c.fault == EndlessBody && !c.ended {
				c.out = endlessChunk // and again, as long as the client reads
				c.watchWrite(true)
				return // one chunk per turn: the loop serves the others meanwhile
			}
			c.watchWrite(false)
			if c.ended {
				c.close()
			}
			return
		}
		n, err := unix.Write(c.fd, c.out)
		switch {
		case errors.Is(err, unix.EAGAIN):
			c.watchWrite(true)
			return
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil: // the client left
			c.close()
			return
		}
		c.out = c.out[n:]
	}
}

func (c *faultConn) watchWrite(on bool) {
	ev := uint32(eventloop.EventRead | eventloop.EventHangup)
	if on {
		ev |= eventloop.EventWrite
	}
	_ = c.a.loop.Modify(c.fd, ev)
}

// resetWhenSent resets the connection once what was written has reached
// the client (the send queue is empty): a reset drops unsent bytes, and
// the point is that the headers arrive and the body does not.
func (c *faultConn) resetWhenSent(since time.Time) {
	if c.fd < 0 {
		return
	}
	queued, err := unix.IoctlGetInt(c.fd, unix.SIOCOUTQ)
	if err == nil && (queued > 0 || len(c.out) > 0) && time.Since(since) < resetGiveUp {
		c.timer = c.a.loop.AfterFunc(resetCheckEvery, func() { c.timer = nil; c.resetWhenSent(since) })
		return
	}
	c.a.loop.Remove(c.fd)
	resetClose(c.fd)
	c.fd = -1
	delete(c.a.faultConns, c)
}

// drip writes rest one byte per dripInterval, then closes.
func (c *faultConn) drip(rest []byte) {
	if c.fd < 0 {
		return
	}
	if len(rest) == 0 {
		c.close()
		return
	}
	if _, err := unix.Write(c.fd, rest[:1]); err != nil && !errors.Is(err, unix.EAGAIN) {
		c.close()
		return
	}
	c.timer = c.a.loop.AfterFunc(dripInterval, func() { c.timer = nil; c.drip(rest[1:]) })
}

// close releases the connection, whatever it was doing.
func (c *faultConn) close() {
	if c.fd < 0 {
		return
	}
	if c.timer != nil {
		c.a.loop.StopTimer(c.timer)
		c.timer = nil
	}
	c.a.loop.Remove(c.fd)
	unix.Close(c.fd)
	c.fd = -1
	delete(c.a.faultConns, c)
}
