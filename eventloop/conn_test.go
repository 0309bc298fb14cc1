package eventloop

import "testing"

// TestSetStateReportsATransitionNotInTheTable checks the guard every
// server test relies on: their ErrorLog fails the test, so a state change
// the table does not list cannot pass unnoticed.
func TestSetStateReportsATransitionNotInTheTable(t *testing.T) {
	var logged []string
	s := &Server{conns: map[*conn]struct{}{}, cfg: ServerConfig{ErrorLog: func(msg string, err error) {
		logged = append(logged, msg+": "+err.Error())
	}}}
	c := &conn{s: s, state: stateLingering}
	c.setState(stateActive)
	want := "connection state: lingering → active is not a transition (bug)"
	if len(logged) != 1 || logged[0] != want {
		t.Errorf("logged %q, want %q", logged, want)
	}
	logged, s.inFlight, s.requests = nil, 0, 0
	c.state = stateBody
	c.setState(stateActive)
	if len(logged) != 0 || s.inFlight != 1 || s.requests != 1 {
		t.Errorf("body → active: logged %q, in flight %d, requests %d; want no log, 1 and 1", logged, s.inFlight, s.requests)
	}
}
