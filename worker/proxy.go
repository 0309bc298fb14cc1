package worker

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// trustedProxies is uvicorn's --forwarded-allow-ips: the peers whose
// X-Forwarded-For and X-Forwarded-Proto are believed. Anyone else could
// claim any address, so their headers are ignored.
type trustedProxies struct {
	all      bool           // `*`
	networks []netip.Prefix // addresses are /32 or /128 networks
	literals []string       // anything else, matched as the peer is named: `unix`, `unix:/run/x.sock`
}

// parseTrusted reads a comma-separated list of addresses, CIDR networks,
// literals and `*`. An empty list trusts no one.
func parseTrusted(list string) (*trustedProxies, error) {
	t := &trustedProxies{}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
		case item == "*":
			t.all = true
		case strings.Contains(item, "/") && !strings.HasPrefix(item, "unix"):
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("%q: not an address, a network (10.0.0.0/8) or *", item)
			}
			t.networks = append(t.networks, p.Masked())
		default:
			if a, err := netip.ParseAddr(item); err == nil {
				a = a.Unmap()
				t.networks = append(t.networks, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			if !strings.HasPrefix(item, "unix") {
				return nil, fmt.Errorf("%q: not an address, a network (10.0.0.0/8), unix or *", item)
			}
			t.literals = append(t.literals, item)
		}
	}
	return t, nil
}

// trustsPeer reports whether a connection's peer ("127.0.0.1:54321", or
// a literal such as `unix`) is a trusted proxy.
func (t *trustedProxies) trustsPeer(peer string) bool {
	if t.all {
		return true
	}
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		return t.trustsAddr(ap.Addr())
	}
	return slices.Contains(t.literals, peer)
}

func (t *trustedProxies) trustsAddr(a netip.Addr) bool {
	a = a.Unmap()
	return t.all || slices.ContainsFunc(t.networks, func(p netip.Prefix) bool { return p.Contains(a) })
}

// forwarded returns the client and scheme of a request that came from
// peer (the connection's address: "127.0.0.1:54321", or "unix"), as
// uvicorn's ProxyHeadersMiddleware decides them: from a trusted peer, the
// scheme of X-Forwarded-Proto (http, https, ws or wss) and the client of
// X-Forwarded-For — the nearest address in it that is not itself a trusted
// proxy, with port 0, since the client's port is lost on the way. Unlike
// uvicorn, an entry that is not an IP address is not believed: it would
// otherwise go into the access log as the client.
func (t *trustedProxies) forwarded(peer string, h http.Header) (client, scheme string) {
	client, scheme = peer, "http"
	// Keys are canonical in a parsed header, so the map is read directly
	// (Get canonicalises its key on every call); and a request with
	// neither header — nearly all of them — is decided without parsing
	// the peer's address. This runs once per request, for the access log.
	protos, values := h["X-Forwarded-Proto"], h["X-Forwarded-For"]
	if len(protos) == 0 && len(values) == 0 || !t.trustsPeer(peer) {
		return client, scheme
	}
	if len(protos) > 0 {
		if p := strings.ToLower(strings.TrimSpace(protos[0])); p == "http" || p == "https" || p == "ws" || p == "wss" {
			scheme = p
		}
	}
	if len(values) == 0 {
		return client, scheme
	}
	var hops []string
	for _, v := range values { // several header lines are one list, in order
		for hop := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	chosen := hops[0] // every hop trusted (or `*`): the first is the client
	if !t.all {
		for i := len(hops) - 1; i >= 0; i-- {
			if a, ok := hopAddr(hops[i]); !ok || !t.trustsAddr(a) {
				chosen = hops[i]
				break
			}
		}
	}
	if a, ok := hopAddr(chosen); ok {
		client = net.JoinHostPort(a.String(), "0")
	}
	return client, scheme
}

// hopAddr reads an X-Forwarded-For entry: an address, or one with a port
// (some proxies add it), whose port is dropped.
func hopAddr(hop string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(hop); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(hop); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
