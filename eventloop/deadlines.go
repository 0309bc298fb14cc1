package eventloop

import (
	"net/http"
	"time"
)

// lingerTimeout bounds how long a connection that was answered with an
// error drains input after shutdown(SHUT_WR). Closing a socket with
// unread input sends RST, which can destroy the error response before
// the client reads it; net/http and nginx linger for the same reason.
const lingerTimeout = 500 * time.Millisecond

// armIdle starts the keep-alive clock unless it already runs. One lazy timer
// per connection serves every idle period: it re-arms itself when the
// deadline moved, so the common request/response cycle touches no timer.
func (c *conn) armIdle() {
	if !c.idleDeadline.IsZero() {
		return
	}
	c.idleDeadline = c.s.loop.Now().Add(c.s.cfg.KeepAliveTimeout)
	if c.idleTimer == nil {
		c.idleTimer = c.s.loop.AfterFunc(c.s.cfg.KeepAliveTimeout, c.onIdle)
	}
}

func (c *conn) idleFired() {
	c.idleTimer = nil
	if c.fd < 0 || c.idleDeadline.IsZero() {
		return // busy now; the next idle period arms a new timer
	}
	if d := c.idleDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.idleTimer = c.s.loop.AfterFunc(d, c.onIdle)
		return
	}
	c.close()
}

// armHeaderTimeout starts the header clock unless it already runs; lazy
// like armIdle.
func (c *conn) armHeaderTimeout() {
	if !c.hdrDeadline.IsZero() {
		return
	}
	d := c.s.cfg.RequestHeaderTimeout
	c.hdrDeadline = c.s.loop.Now().Add(d)
	if c.hdrTimer == nil {
		c.hdrTimer = c.s.loop.AfterFunc(d, c.onHeaderTimeout)
	}
}

func (c *conn) headerFired() {
	c.hdrTimer = nil
	if c.fd < 0 || c.hdrDeadline.IsZero() {
		return // the header completed; a later one arms a new timer
	}
	if d := c.hdrDeadline.Sub(c.s.loop.Now()); d > 0 {
		c.hdrTimer = c.s.loop.AfterFunc(d, c.onHeaderTimeout)
		return
	}
	c.hdrDeadline = time.Time{}
	if c.w != nil || c.req != nil || c.closeAfter || c.lingering || c.outPending() {
		return // not waiting on a header any more
	}
	c.fail(http.StatusRequestTimeout, "request header not received in time")
	if c.fd >= 0 {
		c.advance()
	}
}
