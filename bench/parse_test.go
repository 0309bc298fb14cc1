package bench

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinBucketPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b histogram
	var all []time.Duration
	for i := range 20000 {
		// Log-uniform from 1 µs to 10 s: every bucket regime is exercised.
		d := time.Duration(float64(time.Microsecond) * math.Pow(10, rng.Float64()*7))
		all = append(all, d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	slices.Sort(all)
	if a.n != uint64(len(all)) {
		t.Fatalf("n = %d, want %d", a.n, len(all))
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := a.quantile(q)
		// 32 buckets per power of two: 1/32 relative width, plus 1 µs of
		// rounding near the bottom.
		if diff := absDur(got - want); float64(diff) > float64(want)/30+float64(time.Microsecond) {
			t.Errorf("q%.3f = %v, want %v (±3.3%%)", q, got, want)
		}
	}
	if a.quantile(1) != all[len(all)-1] || a.max != all[len(all)-1] {
		t.Errorf("max = %v / q1 = %v, want exactly %v", a.max, a.quantile(1), all[len(all)-1])
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.quantile(1) != 0 {
		t.Error("an empty histogram should report zeros")
	}
}

func TestHistogramIndexIsMonotonicAndInRange(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us += 1 + us/64 {
		i := histIndex(us)
		if i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d (buckets %d)", us, i, prev, histBuckets)
		}
		if v := histValue(i); v < float64(us)*0.96 || v > float64(us)*1.04+1 {
			t.Fatalf("histValue(histIndex(%d)) = %v: outside the bucket", us, v)
		}
		prev = i
	}
	if i := histIndex(1 << 62); i != histBuckets-1 {
		t.Errorf("a huge value lands in bucket %d, want the last (%d)", i, histBuckets-1)
	}
}

func absDur(d time.Duration) time.Duration { return max(d, -d) }

func TestParseStatCPUSkipsAWeirdCommandName(t *testing.T) {
	// comm may hold spaces and ')'; utime=250 and stime=50 ticks → 3 s.
	stat := "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 1000 200"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU("1234 (x) S 1"); err == nil {
		t.Error("a short stat line should fail")
	}
	// The real thing: this process has used some CPU.
	self, err := cpuTime(os.Getpid())
	if err != nil || self < 0 {
		t.Fatalf("cpuTime(self) = %v, %v", self, err)
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tdemo\nVmPeak:\t  100 kB\nVmHWM:\t    8192 kB\nVmRSS:\t    4096 kB\n"
	if v, err := parseStatusKiB(status, "VmHWM"); err != nil || v != 8192 {
		t.Errorf("VmHWM = %d, %v; want 8192", v, err)
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil {
		t.Error("a missing key should fail")
	}
	if v, err := statusKiB(os.Getpid(), "VmRSS"); err != nil || v <= 0 {
		t.Errorf("own VmRSS = %d, %v", v, err)
	}
	if n, err := openFilesLimit(os.Getpid()); err != nil || n == 0 {
		t.Errorf("own open-files limit = %d, %v", n, err)
	}
}

func TestParseEstablished(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
`
	// Port 0x1F90 = 8080: the listener (0A) and TIME_WAIT (06) do not count,
	// nor does the client end (local port 0xC350).
	got := parseEstablished(table, 8080)
	if !slices.Equal(got, []uint64{222}) {
		t.Errorf("established on 8080 = %v, want [222]", got)
	}
}

func TestParseListenDrops(t *testing.T) {
	netstat := "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeouts\n" +
		"TcpExt: 0 7 9 3\n" +
		"IpExt: InNoRoutes\nIpExt: 0\n"
	ov, drops, err := parseListenDrops(netstat)
	if err != nil || ov != 7 || drops != 9 {
		t.Errorf("= %d, %d, %v; want 7, 9", ov, drops, err)
	}
	if _, _, err := parseListenDrops("IpExt: a\nIpExt: 1\n"); err == nil {
		t.Error("no TcpExt should fail")
	}
	if _, _, err := listenOverflows(); err != nil {
		t.Errorf("this machine's counters: %v", err)
	}
}

const wrkOutput = `Running 10s test @ http://127.0.0.1:40000/healthcheck
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.31ms  412.55us  12.40ms   91.02%
    Req/Sec    48.84k     1.91k   52.10k    72.00%
  Latency Distribution
     50%    1.25ms
     75%    1.40ms
     90%    1.62ms
     99%    2.91ms
  486012 requests in 10.00s, 70.92MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  48600.11
Transfer/sec:      7.09MB
`

func TestParseWrk(t *testing.T) {
	res, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 486012 || res.elapsed != 10*time.Second {
		t.Errorf("requests %d in %v, want 486012 in 10s", res.requests, res.elapsed)
	}
	if res.non2xx != 5 || res.errors != 3 || !strings.Contains(res.firstErr, "read 2") {
		t.Errorf("non2xx %d errors %d (%q), want 5 and 3", res.non2xx, res.errors, res.firstErr)
	}
	near := func(got, want time.Duration) bool { return absDur(got-want) <= want/30 }
	if p50, p99 := res.lat.quantile(0.5), res.lat.quantile(0.99); !near(p50, 1250*time.Microsecond) || !near(p99, 2910*time.Microsecond) {
		t.Errorf("p50 %v p99 %v, want 1.25ms and 2.91ms", p50, p99)
	}
	if res.lat.max != 12400*time.Microsecond {
		t.Errorf("max %v, want 12.4ms", res.lat.max)
	}
	// An odd count: the median must still come out at wrk's 50% point.
	odd := strings.Replace(wrkOutput, "486012 requests", "486013 requests", 1)
	if res, err := parseWrk(odd); err != nil || !near(res.lat.quantile(0.5), 1250*time.Microsecond) {
		t.Errorf("odd count: p50 %v, %v", res.lat.quantile(0.5), err)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("output without a summary should fail")
	}
}

func TestParseScenarios(t *testing.T) {
	got, err := ParseScenarios(" capacity, throughput,capacity ")
	if err != nil || !slices.Equal(got, []string{Capacity, Throughput}) {
		t.Errorf("= %v, %v", got, err)
	}
	for _, bad := range []string{"", "speed", "throughput,,nope"} {
		if _, err := ParseScenarios(bad); err == nil {
			t.Errorf("ParseScenarios(%q) should fail", bad)
		}
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := fmtInt(n); got != want {
			t.Errorf("fmtInt(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{150 * time.Microsecond: "150µs", 2345 * time.Microsecond: "2.35ms", 45 * time.Millisecond: "45.0ms", 2500 * time.Millisecond: "2.50s"} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestRatioIsTheMedianOfEachRoundsOwn: a slow round slows both servers; the
// ratio of two medians taken from different rounds would mix them.
func TestRatioIsTheMedianOfEachRoundsOwn(t *testing.T) {
	rounds := func(vs ...float64) *measurement {
		m := &measurement{}
		for _, v := range vs {
			m.reps = append(m.reps, figures{perCPU: v})
		}
		m.fig = figures{perCPU: slices.Sorted(slices.Values(vs))[len(vs)/2]}
		return m
	}
	// Round 2 ran on a slow machine. Demo was 1.5× base in two rounds out
	// of three; the medians (120 and 100) come from different rounds and
	// would say 1.2×.
	demo, base := rounds(150, 90, 120), rounds(100, 60, 120)
	if got := ratio(demo, base, perCPU); math.Abs(got-1.5) > 1e-9 {
		t.Errorf("paired ratio %v, want 1.5", got)
	}
	// Unequal runs (a server failed a round): the medians' ratio.
	if got := ratio(rounds(150, 90), base, perCPU); math.Abs(got-150.0/100) > 1e-9 {
		t.Errorf("fallback ratio %v, want %v", got, 150.0/100)
	}
}
