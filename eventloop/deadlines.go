package eventloop

import (
	"net/http"
	"time"
)

// lingerTimeout bounds how long a connection whose client may still be
// sending (a rejected request, or requests pipelined behind the last
// answer) drains input after shutdown(SHUT_WR). Closing a socket with
// unread input sends RST, which can destroy the last response before the
// client reads it; net/http and nginx linger for the same reason.
const lingerTimeout = 500 * time.Millisecond

// The connection's clocks. setState starts and stops them as the state
// changes; only bytesArrived moves a deadline besides, since every byte
// restarts the keep-alive clock.
//
// The keep-alive and header clocks are lazy: one timer per connection
// serves every period, re-arming itself when it fires early because the
// deadline moved, and dropping itself when it fires with no deadline set.
// So the common request/response cycle sets a deadline and touches no
// timer.

// startIdleClock starts the keep-alive clock: KeepAliveTimeout from now.
func (c *conn) startIdleClock() {
	c.idleDeadline = c.s.loop.Now().Add(c.s.cfg.KeepAliveTimeout)
	if c.idleTimer == nil {
		c.idleTimer = c.s.loop.AfterFunc(c.s.cfg.KeepAliveTimeout, c.onIdle)
	}
}

// stopIdleClock stops the keep-alive clock; its timer drops itself when it
// fires.
func (c *conn) stopIdleClock() { c.idleDeadline = time.Time{} }

// bytesArrived restarts the keep-alive clock if it runs.
func (c *conn) bytesArrived() {
	if !c.idleDeadline.IsZero() {
		c.idleDeadline = c.s.loop.Now().Add(c.s.cfg.KeepAliveTimeout)
	}
}

func (c *conn) idleFired() {
	c.idleTimer = nil
	if c.idleDeadline.IsZero() {
		return // not waiting now; the next wait starts a new timer
	}
	if d := c.idleDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.idleTimer = c.s.loop.AfterFunc(d, c.onIdle)
		return
	}
	c.close()
}

// startHeaderClock starts the RequestHeaderTimeout clock. Unlike the
// keep-alive clock, arriving bytes do not restart it.
func (c *conn) startHeaderClock() {
	d := c.s.cfg.RequestHeaderTimeout
	c.hdrDeadline = c.s.loop.Now().Add(d)
	if c.hdrTimer == nil {
		c.hdrTimer = c.s.loop.AfterFunc(d, c.onHeaderTimeout)
	}
}

func (c *conn) stopHeaderClock() { c.hdrDeadline = time.Time{} }

func (c *conn) headerFired() {
	c.hdrTimer = nil
	if c.hdrDeadline.IsZero() {
		return // the header completed; a later one starts a new timer
	}
	if d := c.hdrDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.hdrTimer = c.s.loop.AfterFunc(d, c.onHeaderTimeout)
		return
	}
	c.fail(http.StatusRequestTimeout, "request header not received in time")
	if c.fd >= 0 {
		c.advance()
	}
}

// startBodyClock starts the RequestBodyTimeout clock, unless it runs:
// it is measured from the end of the header, whatever the body does.
func (c *conn) startBodyClock() {
	if !c.bodyDeadline.IsZero() {
		return
	}
	d := c.s.cfg.RequestBodyTimeout
	c.bodyDeadline = c.s.loop.Now().Add(d)
	if c.bodyTimer == nil {
		c.bodyTimer = c.s.loop.AfterFunc(d, c.onBodyTimeout)
	}
}

func (c *conn) stopBodyClock() { c.bodyDeadline = time.Time{} }

func (c *conn) bodyFired() {
	c.bodyTimer = nil
	if c.bodyDeadline.IsZero() {
		return // the body completed; a later one starts a new timer
	}
	if d := c.bodyDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.bodyTimer = c.s.loop.AfterFunc(d, c.onBodyTimeout)
		return
	}
	c.fail(http.StatusRequestTimeout, "request body not received in time")
	if c.fd >= 0 {
		c.advance()
	}
}

func (c *conn) startLingerClock() {
	c.lingerTimer = c.s.loop.AfterFunc(lingerTimeout, c.close)
}

// stopClocks stops every clock and its timer: the socket is closed.
func (c *conn) stopClocks() {
	for _, t := range []**Timer{&c.idleTimer, &c.hdrTimer, &c.bodyTimer, &c.lingerTimer} {
		if *t != nil {
			c.s.loop.StopTimer(*t)
			*t = nil
		}
	}
	c.idleDeadline, c.hdrDeadline, c.bodyDeadline = time.Time{}, time.Time{}, time.Time{}
}
