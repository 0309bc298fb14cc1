// Package metrics serves the master's Prometheus metrics (`demo serve
// --metrics HOST:PORT`): per worker index, requests, requests in flight,
// connections, how long its event loop is blocked now, a histogram of its
// stalls and its restarts by cause; and the master process's own (process_*,
// go_*). The master serves them, not the workers, so a blocked worker
// cannot hide its stall: the scrape is answered from the supervisor's
// snapshot, which the master's event goroutine hands over without ever
// waiting for the scraper.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"demo/supervisor"
)

// Source gives the supervisor's table; *supervisor.Inspector is one.
type Source interface {
	Snapshot(ctx context.Context) (supervisor.Snapshot, error)
}

// snapshotTimeout bounds the wait for the master's table: it answers
// between two events, so only a master that is gone makes this wait.
const snapshotTimeout = 2 * time.Second

var (
	workerLabel = []string{"worker"}

	workersDesc = prometheus.NewDesc("demo_workers",
		"Worker processes the master keeps running (--workers, changed by SIGTTIN and SIGTTOU).", nil, nil)
	readyDesc = prometheus.NewDesc("demo_worker_ready",
		"1 if a process of this worker index is ready (its event loop may be blocked), else 0.", workerLabel, nil)
	requestsDesc = prometheus.NewDesc("demo_worker_requests_total",
		"Requests the worker's processes handed to the app, over every process of this index.", workerLabel, nil)
	inFlightDesc = prometheus.NewDesc("demo_worker_requests_in_flight",
		"Requests the worker's processes are serving now.", workerLabel, nil)
	connsDesc = prometheus.NewDesc("demo_worker_connections",
		"Open connections of the worker's processes.", workerLabel, nil)
	blockedDesc = prometheus.NewDesc("demo_worker_loop_blocked_seconds",
		"How long the worker's event loop has been blocked now, 0 while it runs.", workerLabel, nil)
	stallsDesc = prometheus.NewDesc("demo_worker_loop_stall_seconds",
		"Stalls of the worker's event loop by length, as its blocked-loop detector measured them (or the master, from missing heartbeats, with the detector off).", workerLabel, nil)
	restartsDesc = prometheus.NewDesc("demo_worker_restarts_total",
		"New processes started for the worker index, by cause: crash, timeout (--timeout), healthcheck (not ready in time or no answer to pings), recycle (--limit-max-requests), reload (SIGHUP).",
		[]string{"worker", "cause"}, nil)
)

// collector turns one supervisor snapshot per scrape into metrics.
type collector struct{ src Source }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{workersDesc, readyDesc, requestsDesc, inFlightDesc, connsDesc, blockedDesc, stallsDesc, restartsDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	snap, err := c.src.Snapshot(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(workersDesc, fmt.Errorf("read the master's table: %w", err))
		return
	}
	ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(snap.Wanted))
	ready := map[int]bool{}
	for _, w := range snap.Workers {
		if w.State == supervisor.Ready {
			ready[w.Index] = true
		}
	}
	for _, sl := range snap.Slots {
		idx := strconv.Itoa(sl.Index)
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, idx)
		}
		up := 0.0
		if ready[sl.Index] {
			up = 1
		}
		gauge(readyDesc, up)
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(sl.Requests), idx)
		gauge(inFlightDesc, float64(sl.InFlight))
		gauge(connsDesc, float64(sl.Conns))
		gauge(blockedDesc, sl.Blocked.Seconds())
		ch <- stallHistogram(sl.Stalls, idx)
		for _, cause := range supervisor.RestartCauses {
			ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(sl.Restarts[cause]), idx, cause.String())
		}
	}
}

// stallHistogram is h in Prometheus' terms: cumulative buckets, seconds.
func stallHistogram(h supervisor.StallHistogram, idx string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(supervisor.StallBuckets))
	var below uint64
	for i, bound := range supervisor.StallBuckets {
		if i < len(h.Counts) {
			below += h.Counts[i]
		}
		buckets[bound.Seconds()] = below
	}
	return prometheus.MustNewConstHistogram(stallsDesc, h.Count, h.Sum.Seconds(), buckets, idx)
}

// Handler serves the metrics of src and of this process in Prometheus'
// text format (or protobuf, for a scraper that asks).
func Handler(src Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		&collector{src: src},
	)
	// ContinueOnError: if the table cannot be read (the master is
	// stopping), the process metrics are still worth serving.
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Server serves /metrics on its own socket, from goroutines of net/http
// that never touch the master's table except through Source.
type Server struct {
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

// Listen binds addr (HOST:PORT; port 0 picks one) now, so that a busy port
// fails before any worker starts.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	return &Server{ln: ln}, nil
}

// Addr is where it listens, e.g. "127.0.0.1:9464".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves h at /metrics (404 elsewhere) until Close.
func (s *Server) Serve(h http.Handler) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(s.ln) // ErrServerClosed once Close is called
	}()
}

// Close stops serving: a scrape in progress gets a second to finish.
// It waits for Serve's goroutine.
func (s *Server) Close() error {
	if s.srv == nil {
		return s.ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.wg.Wait()
	return err
}
