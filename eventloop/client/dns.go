package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

const (
	// dnsTTL is how long a successful lookup is reused. Go's resolver does
	// not expose record TTLs; 30 s turns a burst of calls to one host into
	// one lookup without pinning an address for long.
	dnsTTL = 30 * time.Second
	// lookupTimeout bounds a shared lookup even when the calls waiting for
	// it have no timeout of their own.
	lookupTimeout = 10 * time.Second
	// dnsSweepAt is the cache size at which expired entries are dropped.
	dnsSweepAt = 1024
)

// dnsEntry is a cached lookup result, or a lookup in flight while pending.
type dnsEntry struct {
	addrs   []netip.Addr
	expires time.Time
	pending bool
	waiters []*call // calls waiting for the pending lookup
}

// resolve finds k's addresses without blocking the loop: from the cache, by
// joining a lookup in flight, or by starting one on an owned goroutine.
func (c *Client) resolve(k *call) {
	k.state = stateResolving
	e := c.dns[k.t.name]
	switch {
	case e != nil && e.pending:
		e.waiters = append(e.waiters, k)
		return
	case e != nil && c.l.Now().Before(e.expires):
		k.addrs = e.addrs
		k.dial()
		return
	case e == nil:
		if len(c.dns) >= dnsSweepAt {
			c.sweepDNS()
		}
		e = &dnsEntry{}
		c.dns[k.t.name] = e
	}
	e.pending = true
	e.waiters = append(e.waiters, k)
	testHookLookup()
	name, l := k.t.name, c.l
	l.Go(func() {
		ctx, cancel := context.WithTimeout(l.Context(), lookupTimeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		l.Post(func() { c.resolved(name, e, addrs, err) })
	})
}

func (c *Client) sweepDNS() {
	now := c.l.Now()
	for name, e := range c.dns {
		if !e.pending && !now.Before(e.expires) {
			delete(c.dns, name)
		}
	}
}

// resolved runs on the loop with a lookup's result and releases its waiters.
func (c *Client) resolved(name string, e *dnsEntry, addrs []netip.Addr, err error) {
	waiters := e.waiters
	e.waiters, e.pending = nil, false
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("lookup %s: no addresses", name)
	}
	if err != nil {
		delete(c.dns, name) // failures are not cached: the next call retries
		for _, k := range waiters {
			if k.state != stateDone {
				k.fail(err) // *net.DNSError reads "lookup <name> on <server>: ..."
			}
		}
		return
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	// IPv4 first: a local server (Uvicorn's default 127.0.0.1) usually
	// listens on IPv4 only, and the other addresses remain fallbacks.
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
		switch {
		case a.Is4() == b.Is4():
			return 0
		case a.Is4():
			return -1
		default:
			return 1
		}
	})
	e.addrs, e.expires = addrs, c.l.Now().Add(dnsTTL)
	for _, k := range waiters {
		if k.state != stateDone {
			k.addrs = addrs
			k.dial()
		}
	}
}
