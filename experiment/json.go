package experiment

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The --json document, for other tools. Times are seconds (float) from the
// instant the scenario's burst was fired or its arrivals began; the field
// names are the contract.
type jsonDoc struct {
	Settings  jsonSettings   `json:"settings"`
	Scenarios []jsonScenario `json:"scenarios"`
	Events    []Event        `json:"events"`
	SLO       []jsonSLO      `json:"slo,omitempty"`
}

type jsonSettings struct {
	Delay          float64 `json:"delay_s"`
	Calls          int     `json:"calls"`
	ProbeInterval  float64 `json:"probe_interval_s"`
	LateAfter      float64 `json:"late_after_s"`
	ThreadpoolSize int     `json:"threadpool_size"`
	Started        string  `json:"started"`
	RequestTimeout float64 `json:"request_timeout_s,omitempty"` // when --request-timeout was given
	Healthcheck    string  `json:"healthcheck"`
	Target         string  `json:"target,omitempty"`
	App            string  `json:"app,omitempty"` // the app file the servers served
	// Open-loop runs only.
	Rate     float64 `json:"rate,omitempty"`
	Duration float64 `json:"duration_s,omitempty"`
	Mix      string  `json:"mix,omitempty"`
	Seed     *uint64 `json:"seed,omitempty"`
	SLO      string  `json:"slo_objective,omitempty"`
}

type jsonScenario struct {
	Name          string   `json:"name"`
	Kind          string   `json:"kind"` // "burst" or "open-loop"
	Mode          Mode     `json:"mode"`
	Workers       int      `json:"workers"`
	Concurrency   int      `json:"concurrency"`
	Path          string   `json:"path,omitempty"`
	Wall          float64  `json:"wall_s"`
	RequestP50    float64  `json:"request_p50_s"`
	RequestMax    float64  `json:"request_max_s"`
	HealthP50     float64  `json:"health_p50_s"`
	HealthMax     float64  `json:"health_max_s"`
	Probes        int      `json:"probes"`
	LateProbes    int      `json:"late_probes"`
	FailedProbes  int      `json:"failed_probes"`
	Failed        int      `json:"failed_requests"`
	Stalled       float64  `json:"loops_stalled_s"`
	Stalls        int      `json:"stalls"`
	PerWorker     []int    `json:"requests_per_worker,omitempty"` // index 0: worker unknown
	Predicted     *float64 `json:"predicted_s,omitempty"`
	Deviation     *float64 `json:"deviation,omitempty"` // (wall − predicted) / predicted
	ModelDeviates *bool    `json:"model_deviates,omitempty"`
	Summary       string   `json:"summary"`
	Warning       string   `json:"warning,omitempty"`

	// A --target burst: the verdict on its route. blocks_loop is true,
	// false, or null when the evidence was inconclusive.
	Verdict    string          `json:"verdict,omitempty"`
	BlocksLoop json.RawMessage `json:"blocks_loop,omitempty"`

	// An open-loop run.
	Routes       []jsonRoute   `json:"routes,omitempty"`
	Achieved     float64       `json:"achieved_rate,omitempty"`
	LagP50       *float64      `json:"generator_lag_p50_s,omitempty"`
	LagP99       *float64      `json:"generator_lag_p99_s,omitempty"`
	LagMax       *float64      `json:"generator_lag_max_s,omitempty"`
	PeakInFlight int           `json:"peak_in_flight,omitempty"`
	Liveness     *jsonLiveness `json:"liveness,omitempty"`
	SLOMet       *bool         `json:"slo_met,omitempty"`

	Requests     []jsonRequest `json:"requests"`
	HealthChecks []jsonProbe   `json:"health_checks"`
}

type jsonRoute struct {
	Route  string         `json:"route"`
	Sent   int            `json:"sent"`
	OK     int            `json:"ok"`
	Failed map[string]int `json:"failed"` // by cause
	P50    float64        `json:"p50_s"`
	P90    float64        `json:"p90_s"`
	P99    float64        `json:"p99_s"`
	Max    float64        `json:"max_s"`
}

type jsonLiveness struct {
	Period    float64 `json:"period_s"`
	Timeout   float64 `json:"timeout_s"`
	Threshold int     `json:"failure_threshold"`
	Probes    int     `json:"probes"`
	Failed    int     `json:"failed"`
	Restarts  int     `json:"restarts"`
}

// jsonRequest is one request; started_s is null where the server's start
// is unknown (a --target, or a route that logs none).
type jsonRequest struct {
	Index     int      `json:"index"`
	Route     string   `json:"route"`
	ID        string   `json:"id,omitempty"`
	Worker    int      `json:"worker,omitempty"`
	Scheduled float64  `json:"scheduled_s"`
	Sent      float64  `json:"sent_s"`
	Started   *float64 `json:"started_s"`
	Finished  float64  `json:"finished_s"`
	Latency   float64  `json:"latency_s"`
	Status    int      `json:"status"`
	Error     string   `json:"error,omitempty"`
	Cause     string   `json:"cause,omitempty"`
}

// jsonProbe is one health probe: "health" (every probe interval),
// "liveness" (the Kubernetes-style probe) or "baseline" (before a --target
// burst).
type jsonProbe struct {
	Kind    string  `json:"kind"`
	Sent    float64 `json:"sent_s"`
	Latency float64 `json:"latency_s"`
	Status  int     `json:"status"`
	Late    bool    `json:"late"` // liveness: failed
	Error   string  `json:"error,omitempty"`
	Cause   string  `json:"cause,omitempty"`
}

type jsonSLO struct {
	Mode    Mode   `json:"mode,omitempty"`
	Workers int    `json:"fewest_workers"` // 0: none met the objective
	Answer  string `json:"answer"`
}

// Event is one measured event of the --json output. Kind is one of:
//   - "sent": a request left the client (Index);
//   - "started": the server logged "started processing" (Index, ID, Worker);
//   - "finished": the request's response arrived or it failed (Index, ID,
//     Worker, Latency, Status, Error);
//   - "probe": a health probe was sent at T (Latency, Status, Late,
//     Error);
//   - "liveness": a liveness probe was sent at T (Latency, Status, Late
//     meaning failed, Error);
//   - "stall": a worker's event loop was blocked from T for Latency (Worker,
//     ID of the request that blocked it).
type Event struct {
	Scenario string  `json:"scenario"`
	Kind     string  `json:"kind"`
	Route    string  `json:"route,omitempty"`
	Index    int     `json:"index,omitempty"`
	ID       string  `json:"id,omitempty"`
	Worker   int     `json:"worker,omitempty"`
	T        float64 `json:"t"`
	Latency  float64 `json:"latency,omitempty"`
	Status   int     `json:"status,omitempty"`
	Late     bool    `json:"late,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// Events lists every measured event of r, in time order.
func Events(r Result, st Settings) []Event {
	name := r.Scenario.Name()
	var evs []Event
	for _, q := range r.Requests {
		evs = append(evs, Event{Scenario: name, Kind: "sent", Route: q.Route, Index: q.Index, T: q.Sent.Seconds()})
		if q.HasStart {
			evs = append(evs, Event{Scenario: name, Kind: "started", Index: q.Index, ID: q.ID, Worker: q.Worker, T: q.Started.Seconds()})
		}
		evs = append(evs, Event{
			Scenario: name, Kind: "finished", Route: q.Route, Index: q.Index, ID: q.ID, Worker: q.Worker,
			T: q.Finished.Seconds(), Latency: q.Latency().Seconds(), Status: q.Status, Error: q.Err,
		})
	}
	late := st.LateAfter()
	if !r.Scenario.local() && st.Open == nil {
		late = Judge(r, st).LateAfter
	}
	for _, p := range r.Probes {
		evs = append(evs, Event{
			Scenario: name, Kind: "probe", T: p.Sent.Seconds(), Latency: p.Latency.Seconds(),
			Status: p.Status, Late: !p.OK() || p.Latency > late, Error: p.Err,
		})
	}
	for _, p := range r.Liveness {
		evs = append(evs, Event{
			Scenario: name, Kind: "liveness", T: p.Sent.Seconds(), Latency: p.Latency.Seconds(),
			Status: p.Status, Late: !LivenessOK(p), Error: p.Err,
		})
	}
	for _, s := range r.Stalls {
		evs = append(evs, Event{Scenario: name, Kind: "stall", ID: s.RequestID, Worker: s.Worker, T: s.Start.Seconds(), Latency: s.Duration.Seconds()})
	}
	slices.SortStableFunc(evs, func(a, b Event) int { return cmp.Compare(a.T, b.T) })
	return evs
}

// WriteJSON writes the report as JSON: settings, a summary per scenario
// with every request and probe, and every event.
func WriteJSON(w io.Writer, rep *Report) error {
	st := rep.Settings
	doc := jsonDoc{
		Settings: jsonSettings{
			Delay:          st.Delay.Seconds(),
			Calls:          st.Calls,
			ProbeInterval:  st.ProbeInterval.Seconds(),
			LateAfter:      st.LateAfter().Seconds(),
			ThreadpoolSize: st.ThreadpoolSize,
			Started:        rep.Started.Format("2006-01-02T15:04:05.000Z07:00"),
			RequestTimeout: st.RequestTimeout.Seconds(),
			Healthcheck:    st.healthPath(),
			Target:         st.Target,
		},
		Scenarios: []jsonScenario{},
		Events:    []Event{},
	}
	if st.App != nil {
		doc.Settings.App = st.App.File
	}
	if o := st.Open; o != nil {
		doc.Settings.Rate, doc.Settings.Duration, doc.Settings.Mix, doc.Settings.Seed = o.Rate, o.Duration.Seconds(), o.Mix.String(), &o.Seed
	}
	if len(rep.SLO) > 0 {
		objs := make([]string, len(rep.SLO))
		for i, o := range rep.SLO {
			objs[i] = o.String()
		}
		doc.Settings.SLO = strings.Join(objs, ",")
	}
	for _, r := range rep.Results {
		var js jsonScenario
		if st.Open != nil {
			js = openScenarioJSON(r, rep)
		} else {
			js = burstScenarioJSON(Summarize(r, st), st.ModelSkipped() == "")
		}
		js.Requests, js.HealthChecks = requestsJSON(r), probesJSON(r, st)
		doc.Scenarios = append(doc.Scenarios, js)
		doc.Events = append(doc.Events, Events(r, st)...)
	}
	for _, a := range AnswerSLO(rep) {
		doc.SLO = append(doc.SLO, jsonSLO{Mode: a.Mode, Workers: a.Workers, Answer: a.Line})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// burstScenarioJSON is a burst's entry; withModel adds the model check.
func burstScenarioJSON(s Summary, withModel bool) jsonScenario {
	js := jsonScenario{
		Name: s.Scenario.Name(), Kind: "burst", Mode: s.Scenario.Mode, Workers: s.Scenario.Workers,
		Concurrency: s.Scenario.Concurrency, Path: s.Scenario.Path,
		Wall:       s.Wall.Seconds(),
		RequestP50: s.Requests.P50.Seconds(), RequestMax: s.Requests.Max.Seconds(),
		HealthP50: s.Health.P50.Seconds(), HealthMax: s.Health.Max.Seconds(),
		Probes: s.Probes, LateProbes: s.LateProbes, FailedProbes: s.FailedProbes, Failed: s.Failed,
		Stalled: s.Stalled.Seconds(), Stalls: s.Stalls,
		Summary: s.Words,
	}
	if !s.Scenario.local() {
		js.Verdict = s.Verdict.Label()
		js.BlocksLoop = json.RawMessage("null")
		if b := s.Verdict.BlocksLoop; b != nil {
			js.BlocksLoop = json.RawMessage(strconv.FormatBool(*b))
		}
		return js
	}
	js.PerWorker = s.PerWorker
	if !withModel {
		return js
	}
	js.Predicted, js.Deviation = ptr(s.Model.Predicted.Seconds()), ptr(s.Model.Deviation)
	js.ModelDeviates, js.Warning = ptr(s.Model.Deviates()), s.Model.Warning()
	return js
}

func openScenarioJSON(r Result, rep *Report) jsonScenario {
	o := *rep.Settings.Open
	s := SummarizeOpen(r, o)
	js := jsonScenario{
		Name: r.Scenario.Name(), Kind: "open-loop", Mode: r.Scenario.Mode, Workers: r.Scenario.Workers,
		Wall:       r.Wall.Seconds(),
		RequestP50: s.All.P50.Seconds(), RequestMax: s.All.Max.Seconds(),
		HealthP50: r.HealthStats().P50.Seconds(), HealthMax: s.HealthMax.Seconds(),
		Probes: s.Probes, LateProbes: s.LateProbes, FailedProbes: s.FailedProbes, Failed: s.All.Failed(),
		Stalled: s.Stalled.Seconds(), Stalls: s.Stalls,
		Summary: openWords(s, o), Warning: s.Warning(o),
		Achieved: s.Achieved, PeakInFlight: s.PeakInFlight,
		LagP50: ptr(s.LagP50.Seconds()), LagP99: ptr(s.LagP99.Seconds()), LagMax: ptr(s.LagMax.Seconds()),
		Liveness: &jsonLiveness{
			Period: LivenessPeriod.Seconds(), Timeout: LivenessTimeout.Seconds(), Threshold: LivenessFailureThreshold,
			Probes: s.Liveness, Failed: s.LivenessFailed, Restarts: s.Restarts,
		},
	}
	if r.Scenario.local() {
		js.PerWorker = r.PerWorker()
	}
	for _, rs := range s.Routes {
		jr := jsonRoute{Route: rs.Route, Sent: rs.Sent, OK: rs.OK, Failed: map[string]int{},
			P50: rs.P50.Seconds(), P90: rs.P90.Seconds(), P99: rs.P99.Seconds(), Max: rs.Max.Seconds()}
		for _, c := range rs.Causes {
			jr.Failed[c.Cause] = c.N
		}
		js.Routes = append(js.Routes, jr)
	}
	if len(rep.SLO) > 0 {
		js.SLOMet = ptr(CheckSLO(rep.SLO, r).Met)
	}
	return js
}

func requestsJSON(r Result) []jsonRequest {
	out := make([]jsonRequest, len(r.Requests))
	for i, q := range r.Requests {
		jq := jsonRequest{
			Index: q.Index, Route: q.Route, ID: q.ID, Worker: q.Worker,
			Scheduled: q.Scheduled.Seconds(), Sent: q.Sent.Seconds(),
			Finished: q.Finished.Seconds(), Latency: q.Latency().Seconds(),
			Status: q.Status, Error: q.Err, Cause: q.Cause,
		}
		if q.HasStart {
			jq.Started = ptr(q.Started.Seconds())
		}
		out[i] = jq
	}
	return out
}

func probesJSON(r Result, st Settings) []jsonProbe {
	late := st.LateAfter()
	if !r.Scenario.local() && st.Open == nil {
		late = Judge(r, st).LateAfter
	}
	var out []jsonProbe
	add := func(kind string, ps []Probe, isLate func(Probe) bool) {
		for _, p := range ps {
			out = append(out, jsonProbe{Kind: kind, Sent: p.Sent.Seconds(), Latency: p.Latency.Seconds(),
				Status: p.Status, Late: isLate(p), Error: p.Err, Cause: p.Cause})
		}
	}
	lateAfter := func(p Probe) bool { return !p.OK() || p.Latency > late }
	add("baseline", r.Baseline, lateAfter)
	add("health", r.Probes, lateAfter)
	add("liveness", r.Liveness, func(p Probe) bool { return !LivenessOK(p) })
	if out == nil {
		out = []jsonProbe{}
	}
	return out
}
