package eventloop

// Test seams into the watchdog, for the tests of package eventloop_test.

// WatchdogWakeups counts the times l's watchdog woke up so far.
func (l *Loop) WatchdogWakeups() uint64 { return l.watchdog.wakeups.Load() }

// WatchdogParked reports whether l's watchdog is waiting for a callback to
// begin.
func (l *Loop) WatchdogParked() bool { return l.watchdog.parked.Load() }
