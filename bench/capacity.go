package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// capacityResult is what one async worker did with cfg.Capacity slow
// requests in flight at once.
type capacityResult struct {
	asked, n  int // requests asked for, and sent (fewer if open files ran short)
	calls     int
	delay     time.Duration
	connected int           // connections open before the burst
	dialTime  time.Duration // to open them
	tally                   // of the burst's requests
	wall      time.Duration // from the burst to the last response
	lat       histogram     // per request, from the burst
	sent      time.Duration // from the burst until the last request was written
	// longest is the longest time from one request's write to its answer:
	// what the server took, without the wait for the bench to send it.
	longest time.Duration
	health  ProbeResult // /healthcheck probes during the burst, from a process of their own

	// The same burst straight at demo external, one call per request: what
	// the external API alone adds to its delay. extLongest is each
	// request's own answer time at worst, from its write.
	extAlone, extLongest, extSent time.Duration
	extAloneBad                   int

	idleRSS, peakRSS int64 // worker, KiB: before the burst, and VmHWM after it
	workerCPU        time.Duration
	externalCPU      time.Duration
	benchCPU         time.Duration
	overflows, drops uint64 // kernel listen-queue drops while the connections open and during the burst (whole host)
	somaxconn        int
	noFile           uint64 // the worker's open-files limit
	noFileNote       string
}

// budget is the time every request must complete in: its external calls
// one after the other, plus one second.
func (c *capacityResult) budget() time.Duration {
	return time.Duration(c.calls)*c.delay + time.Second
}

// fdsPerRequest: the worker holds each request's client connection and,
// while a call runs, one to the external API; the bench and demo external
// hold one end each.
const fdsPerRequest = 2

// fdReserve is what a process needs besides the requests' sockets.
const fdReserve = 100

// runCapacity starts `demo external` and one async worker, opens
// cfg.Capacity connections to it, then sends GET /all-async on all of them at
// the same instant and waits for every answer, while a probe process of its
// own sends GET /healthcheck on fresh connections.
//
// The connections are opened before the burst so that the measured window is
// the worker holding requests in flight, not the kernel's connect rate.
func (r *runner) runCapacity(ctx context.Context) (err error) {
	c := &r.cfg
	res := &capacityResult{asked: c.Capacity, n: c.Capacity, calls: c.Calls, delay: c.Delay}
	limit, note := raiseNoFile(uint64(fdsPerRequest*c.Capacity + fdReserve))
	if most := (int(limit) - fdReserve) / fdsPerRequest; most < res.n {
		res.n = max(1, most)
		note += fmt.Sprintf("; sending %s requests, the most it allows", fmtInt(int64(res.n)))
	}
	res.noFileNote = note
	res.somaxconn = readSomaxconn()

	r.log("capacity: starting demo external (delay %v) and one async worker", c.Delay)
	ext, extURL, err := startExternal(ctx, c.Bin, c.Delay)
	if err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	defer func() { err = errors.Join(err, ext.Stop(10*time.Second)) }()

	// The control: the same burst at the external API alone, each request
	// the one the worker's calls send (the connection closes after it).
	r.log("capacity: %d requests at demo external alone", res.n)
	control := &capacityResult{asked: res.n, n: res.n, calls: 1, delay: c.Delay}
	if err := burstAt(ctx, extURL, "/", "Accept: */*\r\nConnection: close\r\n", res.n, control); err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	res.extAlone, res.extLongest, res.extSent = control.wall, control.longest, control.sent
	res.extAloneBad = control.asked - control.ok

	// The backlog absorbs the connections opened before the burst while
	// the worker is accepting them; the kernel caps it at somaxconn.
	// The connections are all open before the burst: on a busy machine
	// opening them can take longer than the default keep-alive timeout,
	// which would close the first ones idle.
	backlog := min(max(2048, res.n+1024), 65535)
	s, err := r.startDemo(ctx, "demo async ×1 (capacity)",
		"--workers", "1", "--mode", "async", "--no-access-log", "--backlog", strconv.Itoa(backlog), "--timeout-keep-alive", "60",
		"--external", extURL, "--calls", strconv.Itoa(c.Calls))
	if err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	defer func() { err = errors.Join(err, s.stop()) }()
	workers := s.workers()
	if len(workers) != 1 {
		return fmt.Errorf("capacity: want one worker, found %v", workers)
	}
	worker := workers[0]
	res.noFile, _ = openFilesLimit(worker)
	res.idleRSS, _ = statusKiB(worker, "VmRSS")

	probe, err := startProbeProcess(ctx, c.Bin, s.url+"/healthcheck", c.ProbeInterval)
	if err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	r.log("capacity: %d requests at one async worker", res.n)
	cpuBefore := snapCPU([]int{worker, ext.PID()})
	self0 := selfCPU()
	ovBefore, dropsBefore, netErr := listenOverflows()
	burstErr := burstAt(ctx, s.url, "/all-async", "", res.n, res)
	res.benchCPU = selfCPU() - self0
	_, per := snapCPU([]int{worker, ext.PID()}).since(cpuBefore)
	health, probeErr := probe.stop()
	res.workerCPU, res.externalCPU = per[worker], per[ext.PID()]
	if ov, drops, err := listenOverflows(); err == nil && netErr == nil {
		res.overflows, res.drops = ov-ovBefore, drops-dropsBefore
	}
	res.peakRSS, _ = statusKiB(worker, "VmHWM")
	if err := errors.Join(burstErr, probeErr); err != nil {
		return fmt.Errorf("capacity: %w%s", err, s.lastLines())
	}
	res.health = health
	r.capacity = res
	r.log("capacity: %d/%d completed in %v, peak RSS %d KiB, /healthcheck max %v",
		res.ok, res.n, res.wall.Round(time.Millisecond), res.peakRSS, res.health.Max.Round(time.Millisecond))
	return ctx.Err()
}

// readSomaxconn is the kernel's cap on every listen backlog.
func readSomaxconn() int {
	raw, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return n
}

// raiseNoFile lifts the bench's RLIMIT_NOFILE (soft and hard) to at least
// need; demo serve and its worker inherit it. It returns the soft limit in
// force and, when it is short of need, why (e.g. no privilege to raise the
// hard limit).
func raiseNoFile(need uint64) (uint64, string) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, "getrlimit: " + err.Error()
	}
	if lim.Cur >= need {
		return lim.Cur, ""
	}
	want := syscall.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return need, ""
	}
	// Without CAP_SYS_RESOURCE only the soft limit may rise, to the hard one.
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim.Cur, "setrlimit: " + err.Error()
	}
	return lim.Cur, fmt.Sprintf("RLIMIT_NOFILE hard limit %s is below the %s needed and cannot be raised here",
		fmtInt(int64(lim.Max)), fmtInt(int64(need)))
}
