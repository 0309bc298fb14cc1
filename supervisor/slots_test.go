package supervisor

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
)

// The slot policies, one step at a time: a fake process does only what the
// test says (it gets ready, exits, is killed), the clock moves only when the
// test moves it, and each step is checked against what the supervisor did
// to its processes (started one, signalled one) and, at the end, against
// its table. The tests with real processes (replace_test.go, start_test.go,
// supervisor_test.go) prove the same policies through real signals, pipes
// and sockets; these pin down every branch in microseconds.

// fakeProc is a process that only records what is done to it.
type fakeProc struct {
	id     int
	rig    *rig
	ex     exitInfo // set by the test's "exit" and "killed" steps
	silent bool     // it no longer answers pings
}

func (p *fakeProc) pid() int { return p.id }

func (p *fakeProc) signal(sig syscall.Signal) error {
	p.rig.effect(fmt.Sprintf("%s %d", unix.SignalName(sig), p.id))
	return nil
}

func (p *fakeProc) ping()          {}
func (p *fakeProc) waited()        {}
func (p *fakeProc) exit() exitInfo { return p.ex }

// rig drives a supervisor that was never Run: each step is one event as the
// owner goroutine would handle it, followed by what Run does after every
// event (settle).
type rig struct {
	t       *testing.T
	s       *supervisor
	clock   time.Time
	nextPID int
	procs   map[int]*fakeProc
	kids    map[int]*child
	failing bool     // the next start fails
	effects []string // what the supervisor did during the current step
}

type rigConfig struct {
	workers, maxWorkers, batch int
	grace                      time.Duration
}

func newRig(t *testing.T, rc rigConfig) *rig {
	r := &rig{t: t, clock: time.Unix(1_000_000, 0), nextPID: 101, procs: map[int]*fakeProc{}, kids: map[int]*child{}}
	cfg := Config{
		Workers:            rc.workers,
		MaxWorkers:         rc.maxWorkers,
		GracefulTimeout:    rc.grace,
		HealthcheckTimeout: 5 * time.Second,
		Addr:               "http://127.0.0.1:8000",
		WorkerArgs: func(index, total int) []string {
			return []string{"demo", "worker", fmt.Sprintf("%d/%d", index, total)}
		},
		Logger: zap.NewNop(),
	}
	if cfg.GracefulTimeout == 0 {
		cfg.GracefulTimeout = 30 * time.Second
	}
	r.s = newSupervisor(cfg, watchSocketFile(""))
	r.s.now = func() time.Time { return r.clock }
	r.s.start = r.start
	if rc.batch > 0 {
		r.s.batch = rc.batch
	}
	return r
}

func (r *rig) effect(e string) { r.effects = append(r.effects, e) }

func (r *rig) start(c *child, argv []string) (process, error) {
	if r.failing {
		r.failing = false
		r.effect("start " + argv[2] + " failed")
		return nil, errors.New("fork/exec demo: no such file or directory")
	}
	p := &fakeProc{id: r.nextPID, rig: r}
	r.nextPID++
	r.procs[p.id], r.kids[p.id] = p, c
	r.effect(fmt.Sprintf("start %s → %d", argv[2], p.id))
	return p, nil
}

// event hands one event about pid to the owner's handler, then settles.
func (r *rig) event(pid int, kind eventKind, msg contract.Msg) {
	c, ok := r.kids[pid]
	if !ok {
		r.t.Fatalf("no process %d", pid)
	}
	r.s.handleEvent(event{kind: kind, c: c, msg: msg})
	r.s.settle()
}

// ended delivers pid's exit, then the end of its status pipe, as the two
// goroutines of a real process do.
func (r *rig) ended(pid int, ex exitInfo) {
	if p := r.procs[pid]; p != nil {
		p.ex = ex
	}
	r.event(pid, evExited, contract.Msg{})
	r.event(pid, evPipeClosed, contract.Msg{})
}

// do runs one step, written as in the tables:
//
//	start            Run begins: the first batch of workers starts
//	up               start, then every process that starts gets ready
//	SIGHUP …         a signal to the master
//	ready PID        the process says it is ready
//	retire PID       it served its --limit-max-requests
//	exit PID CODE    it exits with CODE
//	killed PID       a signal ended it
//	wait D           time passes; the timers due (respawn, drain) fire
//	paused D         the master does not run for D (stopped), then wakes
//	tick             every process answers its ping, but the silent ones;
//	                 then the health check runs
//	silent PID       the process stops answering pings
//	start fails      the next process cannot be started
func (r *rig) do(step string) {
	r.t.Helper()
	f := strings.Fields(step)
	arg := func(i int) int {
		var n int
		if _, err := fmt.Sscan(f[i], &n); err != nil {
			r.t.Fatalf("step %q: %v", step, err)
		}
		return n
	}
	switch f[0] {
	case "start":
		if len(f) == 2 && f[1] == "fails" {
			r.failing = true
			return
		}
		r.s.startAll()
	case "up":
		r.s.startAll()
		for done := 0; done < len(r.s.children); done++ {
			c := r.s.children[done]
			r.event(c.pid, evMsg, contract.Msg{Kind: contract.Ready})
		}
	case "SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT", "SIGTTIN", "SIGTTOU":
		r.s.handleSignal(unix.SignalNum(f[0]))
		r.s.settle()
	case "ready":
		r.event(arg(1), evMsg, contract.Msg{Kind: contract.Ready})
	case "retire":
		r.event(arg(1), evMsg, contract.Msg{Kind: contract.Retire, Value: 50})
	case "exit":
		r.ended(arg(1), exitInfo{code: arg(2), desc: "exit status " + f[2]})
	case "killed":
		r.ended(arg(1), exitInfo{code: -1, desc: "signal: killed"})
	case "wait":
		d, err := time.ParseDuration(f[1])
		if err != nil {
			r.t.Fatalf("step %q: %v", step, err)
		}
		r.clock = r.clock.Add(d)
		for _, sl := range r.s.slots {
			if !sl.respawnAt.IsZero() && !r.clock.Before(sl.respawnAt) {
				r.s.respawnDue()
				break
			}
		}
		if r.s.drain != nil && !r.clock.Before(r.s.drainAt) {
			r.s.drainExpired()
		}
		r.s.settle()
	case "paused":
		d, err := time.ParseDuration(f[1])
		if err != nil {
			r.t.Fatalf("step %q: %v", step, err)
		}
		r.s.woke(r.clock)
		r.clock = r.clock.Add(d)
		r.s.woke(r.clock)
		r.s.settle()
	case "silent":
		r.procs[arg(1)].silent = true
	case "tick":
		for _, c := range append([]*child(nil), r.s.children...) {
			if c.alive() && !r.procs[c.pid].silent {
				r.s.handleEvent(event{kind: evMsg, c: c, msg: contract.Msg{Kind: contract.Alive}})
			}
		}
		r.s.checkHealth(r.clock)
		r.s.settle()
	default:
		r.t.Fatalf("unknown step %q", step)
	}
}

// table is the supervisor's table in one line: each slot's serving
// process (← the one booting to take over), a pending respawn; then the
// processes that serve no slot any more; then the phase.
func (r *rig) table() string {
	desc := func(c *child) string {
		if c == nil {
			return "-"
		}
		return fmt.Sprintf("%d %s", c.pid, c.state)
	}
	var slots []string
	for _, sl := range r.s.slots {
		s := fmt.Sprintf("%d: %s", sl.index, desc(sl.cur))
		if sl.next != nil {
			s += " ← " + desc(sl.next)
		}
		if !sl.respawnAt.IsZero() {
			s += fmt.Sprintf(" (respawn in %v)", sl.respawnAt.Sub(r.clock))
		}
		slots = append(slots, s)
	}
	out := strings.Join(slots, " | ")
	var others []string
	for _, c := range r.s.children {
		if sl := c.slot; sl.index > len(r.s.slots) || r.s.slots[sl.index-1] != sl || (sl.cur != c && sl.next != c) {
			others = append(others, desc(c))
		}
	}
	if len(others) > 0 {
		out += "; others: " + strings.Join(others, ", ")
	}
	switch {
	case r.s.stopping && len(r.s.children) == 0:
		out += "; stopped"
	case r.s.stopping:
		out += "; stopping"
	case r.s.rolling:
		out += "; rolling"
	}
	return out
}

// step is one row of a policy's table: what happens, and what the
// supervisor does about it ("; "-separated, "" for nothing).
type step struct{ do, want string }

func TestSlotPolicies(t *testing.T) {
	restarts := func(slot int, want map[RestartCause]uint64) func(*testing.T, *supervisor) {
		return func(t *testing.T, s *supervisor) {
			t.Helper()
			got := s.history(slot).restarts
			for _, c := range RestartCauses {
				if got[c] != want[c] {
					t.Errorf("slot %d restarts %v, want %v", slot, got, want)
					return
				}
			}
		}
	}
	for _, tc := range []struct {
		name  string
		cfg   rigConfig
		steps []step
		table string // at the end
		check func(*testing.T, *supervisor)
	}{
		{
			name: "rolling restart: each successor is ready before its predecessor drains",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGHUP", "start 1/2 → 103"},
				{"tick", ""},
				{"ready 103", "SIGTERM 101; start 2/2 → 104"},
				{"exit 101 0", ""},
				{"ready 104", "SIGTERM 102"},
				{"exit 102 0", ""},
			},
			table: "1: 103 ready | 2: 104 ready",
			check: func(t *testing.T, s *supervisor) {
				if s.rollSteps != 2 {
					t.Errorf("%d steps, want 2", s.rollSteps)
				}
				restarts(1, map[RestartCause]uint64{RestartReload: 1})(t, s)
				restarts(2, map[RestartCause]uint64{RestartReload: 1})(t, s)
			},
		},
		{
			name: "a SIGHUP during a rolling restart extends it: a worker it replaced already is replaced again, the others once",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGHUP", "start 1/2 → 103"},
				{"SIGHUP", ""},
				{"ready 103", "SIGTERM 101; start 1/2 → 104"},
				{"ready 104", "SIGTERM 103; start 2/2 → 105"},
				{"ready 105", "SIGTERM 102"},
			},
			table: "1: 104 ready | 2: 105 ready; others: 101 draining, 102 draining, 103 draining",
			check: func(t *testing.T, s *supervisor) {
				if s.rollSteps != 3 {
					t.Errorf("%d steps, want 3 (worker 1 twice, worker 2 once)", s.rollSteps)
				}
			},
		},
		{
			name: "a successor that exits while booting aborts the restart; the old workers keep serving, a later SIGHUP works",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGHUP", "start 1/2 → 103"},
				{"exit 103 1", ""},
				{"SIGHUP", "start 1/2 → 104"},
				{"ready 104", "SIGTERM 101; start 2/2 → 105"},
			},
			table: "1: 104 ready | 2: 102 ready ← 105 starting; others: 101 draining; rolling",
		},
		{
			name: "a successor that exits 3 aborts the restart, not the master",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGHUP", "start 1/2 → 103"},
				{"exit 103 3", ""},
			},
			table: "1: 101 ready | 2: 102 ready",
		},
		{
			name: "the time the master did not run counts against no worker, silent or booting; after it, time counts again",
			cfg:  rigConfig{workers: 2, batch: 1},
			steps: []step{
				{"start", "start 1/2 → 101"},
				{"ready 101", "start 2/2 → 102"},
				{"silent 101", ""},
				{"paused 30s", ""},
				{"tick", ""},
				{"wait 4s", ""},
				{"tick", ""},
				{"wait 2s", ""},
				{"tick", "SIGKILL 101; SIGKILL 102"},
			},
			table: "1: 101 killed | 2: 102 killed",
		},
		{
			name: "a successor not ready within the healthcheck timeout is killed and the restart aborted",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGHUP", "start 1/2 → 103"},
				{"wait 5s", ""},
				{"tick", ""},
				{"wait 1ms", ""},
				{"tick", "SIGKILL 103"},
				{"killed 103", ""},
			},
			table: "1: 101 ready | 2: 102 ready",
		},
		{
			name: "a successor that cannot even be started aborts the restart",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"start fails", ""},
				{"SIGHUP", "start 1/1 failed"},
			},
			table: "1: 101 ready",
		},
		{
			name: "the serving worker dies while its successor boots: the successor takes over, no other process starts",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"SIGHUP", "start 1/1 → 102"},
				{"killed 101", ""},
				{"ready 102", ""},
			},
			table: "1: 102 ready",
		},
		{
			name: "the serving worker and then its successor die: the slot is respawned like after any death",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"SIGHUP", "start 1/1 → 102"},
				{"killed 101", ""},
				{"killed 102", "start 1/1 → 103"},
				{"ready 103", ""},
			},
			table: "1: 103 ready",
		},
		{
			name: "crash loop: after five deaths within a second of starting, each respawn waits, doubling up to 5s",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"killed 101", "start 1/1 → 102"},
				{"killed 102", "start 1/1 → 103"},
				{"killed 103", "start 1/1 → 104"},
				{"killed 104", "start 1/1 → 105"},
				{"killed 105", ""}, // the fifth: 100ms
				{"wait 99ms", ""},
				{"wait 1ms", "start 1/1 → 106"},
				{"killed 106", ""}, // 200ms
				{"wait 199ms", ""},
				{"wait 1ms", "start 1/1 → 107"},
				{"killed 107", ""}, // 400ms
				{"wait 400ms", "start 1/1 → 108"},
				{"killed 108", ""}, // 800ms
				{"wait 800ms", "start 1/1 → 109"},
				{"killed 109", ""}, // 1.6s
				{"wait 1.6s", "start 1/1 → 110"},
				{"killed 110", ""}, // 3.2s
				{"wait 3.2s", "start 1/1 → 111"},
				{"killed 111", ""}, // capped
				{"wait 4999ms", ""},
				{"wait 1ms", "start 1/1 → 112"},
				{"killed 112", ""},
			},
			table: "1: - (respawn in 5s)",
			check: restarts(1, map[RestartCause]uint64{RestartCrash: 11}),
		},
		{
			name: "crash loop: a process that lived a second ends the run of fast deaths",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"killed 101", "start 1/1 → 102"},
				{"killed 102", "start 1/1 → 103"},
				{"killed 103", "start 1/1 → 104"},
				{"killed 104", "start 1/1 → 105"},
				{"wait 1s", ""},
				{"killed 105", "start 1/1 → 106"},
				{"killed 106", "start 1/1 → 107"},
			},
			table: "1: 107 starting",
		},
		{
			name: "crash loop: a process that cannot even be started counts as a fast death",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"start fails", ""},
				{"killed 101", "start 1/1 failed"},
				{"wait 100ms", "start 1/1 → 102"},
			},
			table: "1: 102 starting",
		},
		{
			name: "a SIGTERM while a respawn waits: nothing is started, the master stops",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"start fails", ""},
				{"killed 101", "start 1/1 failed"},
				{"SIGTERM", ""},
				{"wait 1s", ""},
			},
			table: "1: -; stopped",
		},
		{
			name: "recycling: the replacement is ready before the retiring worker drains",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"retire 101", "start 1/1 → 102"},
				{"retire 101", ""},
				{"ready 102", "SIGTERM 101"},
				{"exit 101 0", ""},
			},
			table: "1: 102 ready",
			check: restarts(1, map[RestartCause]uint64{RestartRecycle: 1}),
		},
		{
			name: "recycling: a replacement that fails to boot leaves the worker serving; its next retire tries again",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"retire 101", "start 1/1 → 102"},
				{"exit 102 1", ""},
				{"retire 101", "start 1/1 → 103"},
			},
			table: "1: 101 ready ← 103 starting",
		},
		{
			name: "recycling: a retire during a shutdown is moot",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"SIGTERM", "SIGTERM 101"},
				{"retire 101", ""},
				{"exit 101 0", ""},
			},
			table: "1: -; stopped",
		},
		{
			name: "SIGTTIN adds a worker told the new total; SIGTTOU drains the last one, never below one",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"SIGTTOU", ""},
				{"SIGTTIN", "start 2/2 → 102"},
				{"ready 102", ""},
				{"SIGTTIN", "start 3/3 → 103"},
				{"ready 103", ""},
				{"SIGTTOU", "SIGTERM 103"},
				{"exit 103 0", ""},
				{"SIGTTOU", "SIGTERM 102"},
				{"exit 102 0", ""},
				{"SIGTTOU", ""},
			},
			table: "1: 101 ready",
			check: restarts(2, nil),
		},
		{
			name: "SIGTTIN stops at MaxWorkers",
			cfg:  rigConfig{workers: 2, maxWorkers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGTTIN", ""},
			},
			table: "1: 101 ready | 2: 102 ready",
		},
		{
			name: "SIGTTIN with a version that cannot start: the new slot is dropped, the next SIGTTIN gets its index again",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"SIGTTIN", "start 2/2 → 102"},
				{"exit 102 3", ""},
				{"SIGTTIN", "start 2/2 → 103"},
			},
			table: "1: 101 ready | 2: - ← 103 starting",
		},
		{
			name: "SIGTTOU of a worker still booting for SIGTTIN",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"SIGTTIN", "start 2/2 → 102"},
				{"SIGTTOU", "SIGTERM 102"},
				{"exit 102 0", ""},
			},
			table: "1: 101 ready",
		},
		{
			name: "a retired worker that does not drain is killed at its own deadline and not replaced",
			cfg:  rigConfig{workers: 2, grace: time.Second},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"SIGTTOU", "SIGTERM 102"},
				{"wait 1s", ""},
				{"tick", ""},
				{"wait 1ms", ""},
				{"tick", "SIGKILL 102"},
				{"killed 102", ""},
			},
			table: "1: 101 ready",
		},
		{
			name: "the start runs a batch at a time, the next as soon as one is ready",
			cfg:  rigConfig{workers: 5, batch: 2},
			steps: []step{
				{"start", "start 1/5 → 101; start 2/5 → 102"},
				{"ready 102", "start 3/5 → 103"},
				{"tick", ""},
				{"ready 101", "start 4/5 → 104"},
				{"ready 103", "start 5/5 → 105"},
				{"ready 104", ""},
				{"ready 105", ""},
			},
			table: "1: 101 ready | 2: 102 ready | 3: 103 ready | 4: 104 ready | 5: 105 ready",
			check: func(t *testing.T, s *supervisor) {
				if !s.announced {
					t.Errorf("not announced once every worker was ready")
				}
			},
		},
		{
			name: "a SIGTERM mid-start drains the booting workers and starts no others",
			cfg:  rigConfig{workers: 5, batch: 2},
			steps: []step{
				{"start", "start 1/5 → 101; start 2/5 → 102"},
				{"SIGTERM", "SIGTERM 101; SIGTERM 102"},
				{"ready 101", ""},
				{"exit 101 0", ""},
				{"exit 102 0", ""},
			},
			table: "1: - | 2: - | 3: - | 4: - | 5: -; stopped",
			check: func(t *testing.T, s *supervisor) {
				if s.announced || s.err != nil {
					t.Errorf("announced %t, error %v; want neither", s.announced, s.err)
				}
			},
		},
		{
			name: "a worker that exits 3 during the start stops the master",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"start", "start 1/2 → 101; start 2/2 → 102"},
				{"exit 102 3", "SIGTERM 101"},
				{"exit 101 0", ""},
			},
			table: "1: - | 2: -; stopped",
			check: func(t *testing.T, s *supervisor) {
				if s.err == nil || !strings.Contains(s.err.Error(), "worker 2/2 [102] could not start (exit status 3)") {
					t.Errorf("error %v", s.err)
				}
			},
		},
		{
			name: "a worker that dies during the start stops the master",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"start", "start 1/2 → 101; start 2/2 → 102"},
				{"ready 101", ""},
				{"killed 102", "SIGTERM 101"},
			},
			table: "1: 101 draining | 2: -; stopping",
			check: func(t *testing.T, s *supervisor) {
				if s.err == nil || !strings.Contains(s.err.Error(), "worker 2/2 [102] exited during start-up: signal: killed") {
					t.Errorf("error %v", s.err)
				}
			},
		},
		{
			name: "a serving worker that exits 3 stops the master rather than respawn it",
			cfg:  rigConfig{workers: 2},
			steps: []step{
				{"up", "start 1/2 → 101; start 2/2 → 102"},
				{"exit 101 3", "SIGTERM 102"},
			},
			table: "1: - | 2: 102 draining; stopping",
		},
		{
			name: "each reason a slot gets a new process is counted under its cause",
			cfg:  rigConfig{workers: 1},
			steps: []step{
				{"up", "start 1/1 → 101"},
				{"killed 101", "start 1/1 → 102"},
				{"ready 102", ""},
				{"retire 102", "start 1/1 → 103"},
				{"ready 103", "SIGTERM 102"},
				{"SIGHUP", "start 1/1 → 104"},
				{"ready 104", "SIGTERM 103"},
				{"silent 104", ""},
				{"wait 5001ms", ""},
				{"tick", "SIGKILL 104"},
				{"killed 104", "start 1/1 → 105"},
			},
			table: "1: 105 starting; others: 102 draining, 103 draining",
			check: restarts(1, map[RestartCause]uint64{RestartCrash: 1, RestartRecycle: 1, RestartReload: 1, RestartHealthcheck: 1}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tc.cfg)
			for i, st := range tc.steps {
				r.effects = nil
				r.do(st.do)
				if got := strings.Join(r.effects, "; "); got != st.want {
					t.Fatalf("step %d %q: the supervisor did %q, want %q\ntable: %s", i+1, st.do, got, st.want, r.table())
				}
			}
			if got := r.table(); got != tc.table {
				t.Errorf("table:\n got %s\nwant %s", got, tc.table)
			}
			if tc.check != nil {
				tc.check(t, r.s)
			}
		})
	}
}
