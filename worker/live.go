package worker

import (
	"encoding/json"
	"sync/atomic"

	"demo/contract"
	"demo/eventloop"
)

// liveCounts are the loop's counters (requests served, in flight, open
// connections) where the lifeline goroutine can read them: the loop
// publishes them as it dispatches each request and at each heartbeat, and
// every Alive carries them. A blocked loop sends no Beat, but it changes
// none of its counters either, so what it last published is the truth while
// it is blocked, and `demo status` shows it instead of numbers from before
// the request that blocked it.
type liveCounts struct {
	seq      atomic.Uint64
	requests atomic.Uint64
	inFlight atomic.Int64
	conns    atomic.Int64

	// What the loop stored last in inFlight and conns: in a steady stream of
	// keep-alive requests neither changes, and an atomic store costs more
	// than a comparison (loop goroutine only).
	lastInFlight, lastConns int
}

// publish stores the counters (loop goroutine only) and returns them.
func (c *liveCounts) publish(requests uint64, st eventloop.ServerStats) contract.LoopStats {
	c.requests.Store(requests)
	if st.InFlight != c.lastInFlight {
		c.lastInFlight = st.InFlight
		c.inFlight.Store(int64(st.InFlight))
	}
	if st.Conns != c.lastConns {
		c.lastConns = st.Conns
		c.conns.Store(int64(st.Conns))
	}
	seq := c.seq.Add(1)
	return contract.LoopStats{Requests: requests, InFlight: st.InFlight, Conns: st.Conns, Seq: seq}
}

// text is what an Alive carries: the counters as last published, as JSON;
// "" before the loop published any. Safe from any goroutine.
func (c *liveCounts) text() string {
	seq := c.seq.Load()
	if seq == 0 {
		return ""
	}
	b, _ := json.Marshal(contract.LoopStats{
		Requests: c.requests.Load(), InFlight: int(c.inFlight.Load()), Conns: int(c.conns.Load()), Seq: seq,
	})
	return string(b)
}
