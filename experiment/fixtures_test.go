package experiment

import (
	"fmt"
	"time"
)

// Fixtures: results shaped like the article's runs with a 2 s external API
// and 2 calls per request, built by hand so the pure parts (stats, model,
// words, renderers) are tested without processes.

var testSettings = Settings{Delay: 2 * time.Second, Calls: 2, ProbeInterval: 100 * time.Millisecond, ThreadpoolSize: 40}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func uuid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// probesUntil sends a probe every 100 ms over [0, end); a probe sent while
// the loop is blocked (before blockedUntil) is answered only then.
func probesUntil(end, blockedUntil, fast time.Duration) []Probe {
	var ps []Probe
	for t := time.Duration(0); t < end; t += 100 * time.Millisecond {
		lat := fast
		if t < blockedUntil {
			lat = blockedUntil - t + fast
		}
		ps = append(ps, Probe{Sent: t, Latency: lat, Status: 200})
	}
	return ps
}

// mixedOne: the loop runs request 1, then request 2; health checks wait.
func mixedOne() Result {
	return Result{
		Scenario: Scenario{Mode: Mixed, Workers: 1, Concurrency: 2, Path: "/"},
		Requests: []Request{
			{Index: 1, ID: uuid(1), Worker: 1, Sent: 0, Started: ms(5), HasStart: true, Finished: ms(4010), Status: 200},
			{Index: 2, ID: uuid(2), Worker: 1, Sent: 0, Started: ms(4008), HasStart: true, Finished: ms(8020), Status: 200},
		},
		Probes: probesUntil(ms(8020), ms(8015), ms(2)),
		Stalls: []Stall{
			{Worker: 1, Start: ms(5), Duration: ms(4002), RequestID: uuid(1), Cause: "GET /"},
			{Worker: 1, Start: ms(4008), Duration: ms(4007), RequestID: uuid(2), Cause: "GET /"},
		},
		Wall: ms(8020),
	}
}

// asyncOne: both requests overlap; health checks stay fast.
func asyncOne() Result {
	return Result{
		Scenario: Scenario{Mode: Async, Workers: 1, Concurrency: 2, Path: "/"},
		Requests: []Request{
			{Index: 1, ID: uuid(3), Worker: 1, Sent: 0, Started: ms(4), HasStart: true, Finished: ms(4012), Status: 200},
			{Index: 2, ID: uuid(4), Worker: 1, Sent: ms(1), Started: ms(5), HasStart: true, Finished: ms(4015), Status: 200},
		},
		Probes: probesUntil(ms(4015), 0, ms(2)),
		Wall:   ms(4015),
	}
}

// mixedTwoGrabbed: worker 1 accepted both connections; worker 2 idled and
// answered the health checks.
func mixedTwoGrabbed() Result {
	r := mixedOne()
	r.Scenario = Scenario{Mode: Mixed, Workers: 2, Concurrency: 2, Path: "/"}
	r.Probes = probesUntil(ms(8020), 0, ms(3))
	return r
}

// mixedTwoSpread: one request per worker; both loops stalled at once.
func mixedTwoSpread() Result {
	return Result{
		Scenario: Scenario{Mode: Mixed, Workers: 2, Concurrency: 2, Path: "/"},
		Requests: []Request{
			{Index: 1, ID: uuid(5), Worker: 1, Sent: 0, Started: ms(4), HasStart: true, Finished: ms(4010), Status: 200},
			{Index: 2, ID: uuid(6), Worker: 2, Sent: 0, Started: ms(6), HasStart: true, Finished: ms(4012), Status: 200},
		},
		Probes: probesUntil(ms(4012), ms(4010), ms(2)),
		Wall:   ms(4012),
	}
}

func threadpoolOne() Result {
	r := asyncOne()
	r.Scenario = Scenario{Mode: Threadpool, Workers: 1, Concurrency: 2, Path: "/"}
	return r
}

func testReport() *Report {
	return &Report{
		Settings: testSettings,
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Results:  []Result{mixedOne(), asyncOne(), mixedTwoGrabbed(), threadpoolOne()},
	}
}
