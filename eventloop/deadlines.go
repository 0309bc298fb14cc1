package eventloop

import (
	"net/http"
	"time"

	"golang.org/x/sys/unix"
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

// lazyClock is a deadline served by one timer for every period: the timer
// re-arms itself when it fires early because the deadline moved, and drops
// itself when it fires with the clock stopped. So the common
// request/response cycle sets a deadline and touches no timer.
type lazyClock struct {
	deadline time.Time // zero while stopped
	timer    *Timer
	onTimer  func() // bound once per connection: arming allocates nothing
}

func (k *lazyClock) start(l *Loop, d time.Duration) {
	k.deadline = l.Now().Add(d)
	if k.timer == nil {
		k.timer = l.AfterFunc(d, k.onTimer)
	}
}

func (k *lazyClock) running() bool { return !k.deadline.IsZero() }

func (k *lazyClock) stop() { k.deadline = time.Time{} }

// expired is the first thing its timer does: it reports whether the
// deadline has passed, and otherwise re-arms for the time left, or lets the
// timer go when the clock was stopped (a later start arms a new one).
func (k *lazyClock) expired(l *Loop) bool {
	k.timer = nil
	if k.deadline.IsZero() {
		return false
	}
	if d := k.deadline.Sub(l.Now()); d > 0 {
		k.timer = l.AfterFunc(d, k.onTimer)
		return false
	}
	return true
}

// lookAgain has the timer fire again in a moment, the deadline unmoved:
// once the loop has read what waits in the socket.
func (k *lazyClock) lookAgain(l *Loop) { k.timer = l.AfterFunc(time.Millisecond, k.onTimer) }

// cancel stops the clock and its timer: the socket is closed.
func (k *lazyClock) cancel(l *Loop) {
	if k.timer != nil {
		l.StopTimer(k.timer)
		k.timer = nil
	}
	k.deadline = time.Time{}
}

// startIdleClock starts the keep-alive clock: KeepAliveTimeout from now.
func (c *conn) startIdleClock() { c.idle.start(c.s.loop, c.s.cfg.KeepAliveTimeout) }

func (c *conn) stopIdleClock() { c.idle.stop() }

// bytesArrived restarts the keep-alive clock if it runs.
func (c *conn) bytesArrived() {
	if c.idle.running() {
		c.idle.deadline = c.s.loop.Now().Add(c.s.cfg.KeepAliveTimeout)
	}
}

func (c *conn) idleFired() {
	if !c.idle.expired(c.s.loop) {
		return
	}
	// The loop runs expired timers after each batch of ready sockets, and
	// a batch is at most maxEvents: after a blocking callback, or in a
	// burst, a request may be waiting in this socket, arrived in time and
	// not read yet. Such a connection is not idle, and closing it with
	// input unread would reset it and lose the request: its read comes in
	// a later batch, and the clock starts again.
	if c.unreadInput() {
		c.startIdleClock()
		return
	}
	c.close()
}

// unreadInput reports whether bytes wait in the socket that the loop has
// not read yet: they arrived before the timer that asks ran.
func (c *conn) unreadInput() bool {
	n, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ)
	return err == nil && n > 0
}

// startHeaderClock starts the RequestHeaderTimeout clock. Unlike the
// keep-alive clock, arriving bytes do not restart it.
func (c *conn) startHeaderClock() { c.header.start(c.s.loop, c.s.cfg.RequestHeaderTimeout) }

func (c *conn) stopHeaderClock() { c.header.stop() }

func (c *conn) headerFired() {
	if c.header.expired(c.s.loop) {
		c.timedOut(&c.header, "request header not received in time")
	}
}

// startBodyClock starts the RequestBodyTimeout clock, unless it runs:
// it is measured from the end of the header, whatever the body does.
func (c *conn) startBodyClock() {
	if !c.body.running() {
		c.body.start(c.s.loop, c.s.cfg.RequestBodyTimeout)
	}
}

func (c *conn) stopBodyClock() { c.body.stop() }

func (c *conn) bodyFired() {
	if c.body.expired(c.s.loop) {
		c.timedOut(&c.body, "request body not received in time")
	}
}

// timedOut answers 408 for a header or body that did not arrive in time —
// unless bytes that did arrive in time wait unread, as after a blocking
// callback or in a burst (see idleFired): then the clock looks again once
// the loop has read them, its deadline unmoved, so what they complete is
// served and what they do not is refused then.
func (c *conn) timedOut(k *lazyClock, why string) {
	if c.unreadInput() {
		k.lookAgain(c.s.loop)
		return
	}
	c.fail(http.StatusRequestTimeout, why)
	if c.fd >= 0 {
		c.advance()
	}
}

func (c *conn) startLingerClock() {
	c.lingerTimer = c.s.loop.AfterFunc(lingerTimeout, c.close)
}

// stopClocks stops every clock and its timer: the socket is closed.
func (c *conn) stopClocks() {
	c.idle.cancel(c.s.loop)
	c.header.cancel(c.s.loop)
	c.body.cancel(c.s.loop)
	if c.lingerTimer != nil {
		c.s.loop.StopTimer(c.lingerTimer)
		c.lingerTimer = nil
	}
}
