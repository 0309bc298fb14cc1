package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pipelineLua makes wrk send its depth (first script argument) requests per
// write, back to back: HTTP/1.1 pipelining. wrk counts the requests in the
// string request() returns and waits for as many responses.
const pipelineLua = `-- written by demo bench: HTTP/1.1 pipelining
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, nil)
  end
  req = table.concat(r)
end

request = function()
  return req
end
`

// runWrk runs wrk against cfg.url (-t1: one thread, about one core,
// leaving the other to the server) and parses its report.
func runWrk(ctx context.Context, wrkPath, scratch string, cfg loadConfig) (loadResult, error) {
	if _, err := cfg.validate(); err != nil {
		return loadResult{}, err
	}
	// wrk takes whole seconds.
	secs := max(1, int(math.Round(cfg.duration.Seconds())))
	args := []string{"-t1", "-c" + strconv.Itoa(cfg.connections), "-d" + strconv.Itoa(secs) + "s",
		"--latency", "--timeout", strconv.Itoa(max(1, int(cfg.timeout.Seconds()))) + "s"}
	if cfg.pipeline > 1 {
		script := filepath.Join(scratch, "pipeline.lua")
		if err := os.WriteFile(script, []byte(pipelineLua), 0o644); err != nil {
			return loadResult{}, fmt.Errorf("wrk script: %w", err)
		}
		args = append(args, "-s", script, cfg.url, "--", strconv.Itoa(cfg.pipeline))
	} else {
		args = append(args, cfg.url)
	}
	cmd := exec.CommandContext(ctx, wrkPath, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	// Pdeathsig fires when the forking thread ends: keep it for wrk's life.
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return loadResult{}, ctx.Err()
		}
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(out.String()))
	}
	res, err := parseWrk(out.String())
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	if res.elapsed <= 0 {
		res.elapsed = elapsed
	}
	res.loadCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
	wrkMax     = regexp.MustCompile(`(?m)^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkSocket  = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads the numbers demo bench reports from wrk's --latency
// output. Latency percentiles become a histogram holding just those points,
// so the table code treats both generators alike.
func parseWrk(out string) (loadResult, error) {
	var res loadResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return res, errors.New("no 'N requests in T' line")
	}
	res.requests, _ = strconv.ParseInt(m[1], 10, 64)
	res.elapsed = wrkDuration(m[2], m[3])
	points := map[string]time.Duration{}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		points[m[1]] = wrkDuration(m[2], m[3])
	}
	if _, ok := points["50"]; !ok {
		return res, errors.New("no latency distribution (was --latency given?)")
	}
	// With pipelining wrk sometimes records no latency at all and prints
	// zeros: leave the histogram empty, the table then shows "-".
	if points["99"] == 0 {
		points = nil
	}
	var maxLat time.Duration
	if m := wrkMax.FindStringSubmatch(out); m != nil {
		maxLat = wrkDuration(m[1], m[2])
	}
	if points != nil {
		res.lat = pointHistogram(res.requests, points["50"], points["99"], maxLat)
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		res.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			res.errors += n
		}
		if res.errors > 0 {
			res.firstErr = strings.TrimSpace(m[0])
		}
	}
	return res, nil
}

func wrkDuration(num, unit string) time.Duration {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0
	}
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	return time.Duration(f * float64(scale))
}

// pointHistogram builds a histogram of n samples whose median is p50 and
// 99th percentile p99: what wrk tells us, and all the table needs.
func pointHistogram(n int64, p50, p99, maxLat time.Duration) histogram {
	var h histogram
	if n <= 0 {
		return h
	}
	// Ranks up to just past 50% sit at p50 and up to just past 99% at p99,
	// whichever way quantile() rounds.
	lo := min(n, n/2+1)
	mid := min(n, n*99/100+2) - lo
	hi := n - lo - mid
	add := func(d time.Duration, k int64) {
		if k <= 0 {
			return
		}
		h.counts[histIndex(uint64(d/time.Microsecond))] += uint64(k)
		h.n += uint64(k)
	}
	add(p50, lo)
	add(p99, mid)
	add(max(p99, maxLat), hi)
	h.max = max(p50, p99, maxLat)
	return h
}

// wrkVersion returns wrk's version line, e.g. "wrk debian/4.1.0-3+b2 [epoll]".
func wrkVersion(path string) string {
	out, _ := exec.Command(path, "--version").CombinedOutput() // prints usage and exits 1
	sc := bufio.NewScanner(bytes.NewReader(out))
	if sc.Scan() {
		if v, _, ok := strings.Cut(sc.Text(), " Copyright"); ok {
			return v
		}
	}
	return "wrk"
}
