package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The readers below look at /proc, the only honest source for another
// process's CPU time and memory.

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, fixed
// at 100 by the kernel ABI on every architecture Go supports on Linux.
const userHZ = 100

// cpuTime is the CPU time (user + system, all threads, dead ones included)
// that pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return parseStatCPU(string(raw))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so counting starts after its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc stat line: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// cpuClock is the CPU time pid has used so far (user + system, all
// threads, dead ones included), to the nanosecond: its process CPU clock
// (clock_getcpuclockid), which Linux lets any process read. /proc's utime
// and stime count 10 ms ticks.
func cpuClock(pid int) (time.Duration, error) {
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) from the kernel's ABI.
	id := int32((^pid)<<3 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, fmt.Errorf("cpu clock of %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// cpuClocks is the CPU time pids have used so far, together.
func cpuClocks(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := cpuClock(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// startTime is when pid started, in clock ticks since boot (field 22 of
// /proc/<pid>/stat): with the pid, it names one process, whatever process
// later gets the same pid. A process that has exited (a zombie waiting for
// its parent) is an error, as one that is gone.
func startTime(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("start time of %d: %w", pid, err)
	}
	return parseStatStart(string(raw))
}

func parseStatStart(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, errors.New("short /proc stat line")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, errors.New("exited")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// statusKiB reads a "Key:   1234 kB" field of /proc/<pid>/status, e.g.
// VmRSS or VmHWM (peak resident set size).
func statusKiB(pid int, key string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of %d: %w", key, pid, err)
	}
	return parseStatusKiB(string(raw), key)
}

func parseStatusKiB(status, key string) (int64, error) {
	for l := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(l, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc status", key)
}

// openFilesLimit is pid's soft RLIMIT_NOFILE, from /proc/<pid>/limits.
func openFilesLimit(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, fmt.Errorf("limits of %d: %w", pid, err)
	}
	for l := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("limits of %d: no Max open files", pid)
}

// childPids lists the children of pid. Each thread lists the children it
// forked, and demo's master forks from a thread of its own.
func childPids(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, f := range files {
		raw, _ := os.ReadFile(f) // a thread may exit meanwhile
		for _, field := range strings.Fields(string(raw)) {
			if n, err := strconv.Atoi(field); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// socketInodes is the set of socket inodes pid holds open.
func socketInodes(pid int) map[uint64]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	out := make(map[uint64]bool, len(entries))
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// establishedOn returns the inodes of established TCP sockets (IPv4) whose
// local port is port: the server side of each client connection.
func establishedOn(port int) ([]uint64, error) {
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("read /proc/net/tcp: %w", err)
	}
	return parseEstablished(string(raw), port), nil
}

// parseEstablished reads /proc/net/tcp lines:
//
//	sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
//	 0: 0100007F:1F90 0100007F:C8B2 01 00000000:00000000 00:00000000 00000000 0 0 12345 ...
func parseEstablished(table string, port int) []uint64 {
	var inodes []uint64
	for l := range strings.Lines(table) {
		f := strings.Fields(l)
		if len(f) < 10 || f[3] != "01" { // 01: TCP_ESTABLISHED
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if inode, err := strconv.ParseUint(f[9], 10, 64); err == nil && inode != 0 {
			inodes = append(inodes, inode)
		}
	}
	return inodes
}

// listenOverflows is the kernel's count of connections dropped because a
// listen queue was full (TcpExt ListenOverflows + ListenDrops counts every
// drop; ListenOverflows those of a full accept queue).
func listenOverflows() (overflows, drops uint64, err error) {
	raw, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/net/netstat: %w", err)
	}
	return parseListenDrops(string(raw))
}

// parseListenDrops finds ListenOverflows and ListenDrops in /proc/net/netstat,
// where a "TcpExt:" line of names is followed by a "TcpExt:" line of values.
func parseListenDrops(netstat string) (overflows, drops uint64, err error) {
	var names []string
	for l := range strings.Lines(netstat) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		found := 0
		for i := 1; i < len(f) && i < len(names); i++ {
			v, perr := strconv.ParseUint(f[i], 10, 64)
			switch names[i] {
			case "ListenOverflows":
				overflows, err, found = v, perr, found+1
			case "ListenDrops":
				drops, err, found = v, perr, found+1
			}
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/net/netstat: %w", err)
			}
		}
		if found != 2 {
			return 0, 0, errors.New("/proc/net/netstat: no ListenOverflows/ListenDrops")
		}
		return overflows, drops, nil
	}
	return 0, 0, errors.New("/proc/net/netstat: no TcpExt lines")
}

// selfCPU is the CPU time the bench process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
