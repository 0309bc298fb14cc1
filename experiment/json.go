package experiment

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// The --json document, for other tools. Times are seconds (float) from the
// instant the scenario's burst was fired; the field names are the contract.
type jsonDoc struct {
	Settings  jsonSettings   `json:"settings"`
	Scenarios []jsonScenario `json:"scenarios"`
	Events    []Event        `json:"events"`
}

type jsonSettings struct {
	Delay          float64 `json:"delay_s"`
	Calls          int     `json:"calls"`
	ProbeInterval  float64 `json:"probe_interval_s"`
	LateAfter      float64 `json:"late_after_s"`
	ThreadpoolSize int     `json:"threadpool_size"`
	Started        string  `json:"started"`
}

type jsonScenario struct {
	Name          string  `json:"name"`
	Mode          Mode    `json:"mode"`
	Workers       int     `json:"workers"`
	Concurrency   int     `json:"concurrency"`
	Wall          float64 `json:"wall_s"`
	RequestP50    float64 `json:"request_p50_s"`
	RequestMax    float64 `json:"request_max_s"`
	HealthP50     float64 `json:"health_p50_s"`
	HealthMax     float64 `json:"health_max_s"`
	Probes        int     `json:"probes"`
	LateProbes    int     `json:"late_probes"`
	FailedProbes  int     `json:"failed_probes"`
	Failed        int     `json:"failed_requests"`
	Stalled       float64 `json:"loops_stalled_s"`
	Stalls        int     `json:"stalls"`
	PerWorker     []int   `json:"requests_per_worker"` // index 0: worker unknown
	Predicted     float64 `json:"predicted_s"`
	Deviation     float64 `json:"deviation"` // (wall − predicted) / predicted
	ModelDeviates bool    `json:"model_deviates"`
	Summary       string  `json:"summary"`
	Warning       string  `json:"warning,omitempty"`
}

// Event is one measured event of the --json output. Kind is one of:
//   - "sent": a request left the client (Index);
//   - "started": the server logged "started processing" (Index, ID, Worker);
//   - "finished": the request's response arrived or it failed (Index, ID,
//     Worker, Latency, Status, Error);
//   - "probe": a /healthcheck probe was sent at T (Latency, Status, Late,
//     Error);
//   - "stall": a worker's event loop was blocked from T for Latency (Worker,
//     ID of the request that blocked it).
type Event struct {
	Scenario string  `json:"scenario"`
	Kind     string  `json:"kind"`
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
		evs = append(evs, Event{Scenario: name, Kind: "sent", Index: q.Index, T: q.Sent.Seconds()})
		if q.HasStart {
			evs = append(evs, Event{Scenario: name, Kind: "started", Index: q.Index, ID: q.ID, Worker: q.Worker, T: q.Started.Seconds()})
		}
		evs = append(evs, Event{
			Scenario: name, Kind: "finished", Index: q.Index, ID: q.ID, Worker: q.Worker,
			T: q.Finished.Seconds(), Latency: q.Latency().Seconds(), Status: q.Status, Error: q.Err,
		})
	}
	for _, p := range r.Probes {
		evs = append(evs, Event{
			Scenario: name, Kind: "probe", T: p.Sent.Seconds(), Latency: p.Latency.Seconds(),
			Status: p.Status, Late: !p.OK() || p.Latency > st.LateAfter(), Error: p.Err,
		})
	}
	for _, s := range r.Stalls {
		evs = append(evs, Event{Scenario: name, Kind: "stall", ID: s.RequestID, Worker: s.Worker, T: s.Start.Seconds(), Latency: s.Duration.Seconds()})
	}
	slices.SortStableFunc(evs, func(a, b Event) int { return cmp.Compare(a.T, b.T) })
	return evs
}

// WriteJSON writes the report as JSON: settings, a summary per scenario and
// every event.
func WriteJSON(w io.Writer, rep *Report) error {
	doc := jsonDoc{
		Settings: jsonSettings{
			Delay:          rep.Settings.Delay.Seconds(),
			Calls:          rep.Settings.Calls,
			ProbeInterval:  rep.Settings.ProbeInterval.Seconds(),
			LateAfter:      rep.Settings.LateAfter().Seconds(),
			ThreadpoolSize: rep.Settings.ThreadpoolSize,
			Started:        rep.Started.Format("2006-01-02T15:04:05.000Z07:00"),
		},
		Scenarios: []jsonScenario{},
		Events:    []Event{},
	}
	for i, s := range rep.Summaries() {
		doc.Scenarios = append(doc.Scenarios, jsonScenario{
			Name: s.Scenario.Name(), Mode: s.Scenario.Mode, Workers: s.Scenario.Workers, Concurrency: s.Scenario.Concurrency,
			Wall:       s.Wall.Seconds(),
			RequestP50: s.Requests.P50.Seconds(), RequestMax: s.Requests.Max.Seconds(),
			HealthP50: s.Health.P50.Seconds(), HealthMax: s.Health.Max.Seconds(),
			Probes: s.Probes, LateProbes: s.LateProbes, FailedProbes: s.FailedProbes, Failed: s.Failed,
			Stalled: s.Stalled.Seconds(), Stalls: s.Stalls, PerWorker: s.PerWorker,
			Predicted: s.Model.Predicted.Seconds(), Deviation: s.Model.Deviation, ModelDeviates: s.Model.Deviates(),
			Summary: s.Words, Warning: s.Model.Warning(),
		})
		doc.Events = append(doc.Events, Events(rep.Results[i], rep.Settings)...)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
