package supervisor

import (
	"syscall"
	"testing"
	"time"
)

// TestStoppedMasterKillsNobody: a master stopped (SIGSTOP here; Ctrl+Z or
// a `stty tostop` terminal alike) for longer than the healthcheck timeout
// and --timeout holds that time against no worker when continued: not the
// ready ones, whose pings it did not send; not the one booting, whose
// "ready" waited in its pipe; not their beats queued meanwhile, which are
// no stall. Its workers served all along.
func TestStoppedMasterKillsNobody(t *testing.T) {
	t.Parallel()
	m := startMasterEnv(t, healthEnv(time.Second, 2*time.Second, 0), 2, 5*time.Second)
	m.waitRunning()
	m.signal(syscall.SIGHUP)
	m.waitFor(`Started server process \[\d+\] \(worker 1/2\)`, 5*time.Second)
	m.signal(syscall.SIGSTOP)
	if _, err := get(m.url + "/"); err != nil {
		t.Errorf("while the master is stopped: %v", err)
	}
	time.Sleep(3 * time.Second) // the pause under test, longer than both limits
	m.signal(syscall.SIGCONT)
	m.waitFor(`Parent process \[\d+\] did not run for \d+\.\ds`, 5*time.Second)
	m.waitFor(`Rolling restart done: 2 worker processes replaced`, 10*time.Second)
	// Every worker has answered a ping sent since: each was judged again.
	for deadline := time.Now().Add(5 * time.Second); ; {
		fresh := true
		for _, w := range m.snapshot() {
			fresh = fresh && w.state == "ready" && w.sinceAlv < 700*time.Millisecond
		}
		if fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers not all ready and answering 5s after the master was continued")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, re := range []string{`not ready after`, `did not answer`, `WORKER TIMEOUT`, `event loop was blocked`, `died`} {
		if n := m.count(re); n != 0 {
			t.Errorf("%d lines matching %q", n, re)
		}
	}
	m.snapshot()
	for _, sl := range m.slots() {
		if sl.stalls != 0 {
			t.Errorf("slot %d: %d stalls counted", sl.index, sl.stalls)
		}
	}
	m.stopCleanly()
}
