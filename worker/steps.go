package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"demo/appspec"
	"demo/contract"
	"demo/eventloop"
	"demo/eventloop/client"
)

// The step runner: what a route's steps do, and on which goroutine.
//
// An `async def` route runs on the loop. A step that can be awaited (a
// call or a sleep without blocking = true) is started there and hands the
// loop back; its completion resumes the route in a later loop callback.
// Any other step (a blocking call or sleep, cpu, log) runs right there on
// the loop goroutine and holds it: see mixed.
//
// A `def` route runs whole on a pool goroutine holding one of
// --threadpool-size slots (Starlette's run_in_threadpool); every step of it
// is blocking there, and only the answer goes back to the loop.

// maxExternalBody bounds what a blocking call reads from the external API.
const maxExternalBody = 1 << 20

// request is one request to an app route, from its first step to its answer.
type request struct {
	a     *app
	spec  *appspec.Route
	w     *eventloop.ResponseWriter
	id    string
	label string // "GET /x (request <id>)", the loop's label while it runs
	next  int    // the step to run next
	calls int    // call steps begun, numbering the `<id> N:` lines

	// What awaited steps call back, bound once per request.
	resume func()
	called func(*client.Response, error)

	// What the client going away cancels (eventloop's OnClientGone), as
	// Uvicorn cancels an app whose client disconnects: the awaited call
	// (its socket closes at once), the awaited sleep, or the context of a
	// `def` route's blocking steps on the pool. A blocking step on the
	// loop cannot be interrupted: the loop is busy running it.
	gone      bool
	stopCall  func()           // the awaited call in flight, or nil
	sleep     *eventloop.Timer // the awaited sleep, or nil
	cancelCtx func()           // a `def` route's context, or nil
}

func (a *app) newRequest(w *eventloop.ResponseWriter, r *appspec.Route) *request {
	q := &request{a: a, spec: r, w: w, id: newRequestID()}
	q.resume, q.called = q.wake, q.onCall
	w.OnClientGone(q.clientGone)
	return q
}

// clientGone cancels what the request waits for; whatever was cancelled
// ends the request (finish), so the server can forget it.
func (q *request) clientGone() {
	q.gone = true
	switch {
	case q.stopCall != nil:
		stop := q.stopCall
		q.stopCall = nil
		stop() // onCall runs later with context.Canceled
	case q.sleep != nil:
		q.a.loop.StopTimer(q.sleep)
		q.sleep = nil
		q.finish(errClientGone)
	case q.cancelCtx != nil:
		q.cancelCtx() // the pool goroutine returns, and posts finish
	}
}

// finish answers the request, unless its client went away: then it only
// lets the server forget it.
func (q *request) finish(err error) {
	if q.gone {
		err = errClientGone
	}
	q.a.end(q.w, q.id, err)
}

// wake resumes the route after an awaited sleep.
func (q *request) wake() {
	q.sleep = nil
	q.run()
}

// run runs an async route's steps from q.next on, on the loop: those that
// hold the loop right here, until one is awaited (run returns; its
// completion calls run again) or the last is done (the answer goes out).
func (q *request) run() {
	a := q.a
	a.loop.AnnotateWith(&q.label)
	for q.next < len(q.spec.Steps) {
		s := &q.spec.Steps[q.next]
		q.next++
		if s.Blocking {
			if err := a.mixed(q, s); err != nil {
				q.finish(err)
				return
			}
			continue
		}
		switch s.Kind {
		case appspec.Call:
			// httpx.AsyncClient: between the request and the response the
			// loop is free.
			q.calls++
			q.stopCall = a.client.Get(a.url(s), a.timeout(s), q.called)
		case appspec.Sleep:
			// await asyncio.sleep: a loop timer.
			q.sleep = a.loop.AfterFunc(s.Duration, q.resume)
		}
		return
	}
	q.finish(nil)
}

// onCall is an awaited call's completion, on the loop.
func (q *request) onCall(resp *client.Response, err error) {
	a := q.a
	q.stopCall = nil
	a.loop.AnnotateWith(&q.label)
	if err == nil && !q.gone {
		// httpx prints the reason phrase: <Response [200 OK]>
		a.line = contract.AppendCall(a.line[:0], q.id, q.calls, resp.Status)
		a.info(a.line)
		err = statusError(resp.StatusCode)
	}
	if err != nil || q.gone {
		q.finish(&callError{n: q.calls, err: err})
		return
	}
	q.run()
}

// mixed runs one step of an `async def` route that cannot be awaited right
// here, on the loop goroutine: the article's mixed case, `requests` (or
// time.sleep, or CPU work) inside `async def`. Until it returns, this
// worker accepts, reads and answers nothing else.
func (a *app) mixed(q *request, s *appspec.Step) error {
	if s.Kind != appspec.Log {
		// Before the loop stops, what it holds back goes out: the answers
		// to requests pipelined before this one (written once per batch
		// otherwise), and the lines logged so far, which would otherwise
		// wait for the logger's timer.
		if a.srv != nil {
			a.srv.Flush()
		}
		_ = a.log.Sync()
	}
	a.step.Store(&s.Label)
	defer a.step.Store(nil)
	return a.blockingStep(context.Background(), q, s, &a.line)
}

// onPool runs a `def` route on a goroutine holding one of ThreadpoolSize
// slots, like Starlette running a plain `def` endpoint with
// anyio.to_thread: the loop keeps serving, and a request beyond the pool's
// size waits for a slot before it even starts processing.
func (a *app) onPool(q *request) {
	ctx, cancel := context.WithCancel(a.loop.Context())
	q.cancelCtx = cancel
	a.loop.Go(func() {
		defer cancel()
		if err := a.pool.Acquire(ctx, 1); err != nil {
			if a.loop.Context().Err() == nil {
				// The client left while the request waited for a slot.
				a.loop.Post(func() { q.finish(err) })
			}
			return // else the worker is exiting; nobody is left to answer
		}
		defer a.pool.Release(1)
		line := contract.AppendStarted(nil, q.id) // a.line is the loop's
		a.infoEvent(line, contract.EventRequestStarted, q.id)
		var err error
		for i := range q.spec.Steps {
			if err = a.blockingStep(ctx, q, &q.spec.Steps[i], &line); err != nil {
				break
			}
		}
		a.loop.Post(func() { q.finish(err) })
	})
}

// blockingStep runs one step to its end on the calling goroutine (the loop
// or a pool goroutine), building log lines in *line. ctx ends pool work
// when the worker exits; on the loop it is Background, and nothing
// interrupts the step, as nothing interrupts time.sleep.
func (a *app) blockingStep(ctx context.Context, q *request, s *appspec.Step, line *[]byte) error {
	switch s.Kind {
	case appspec.Call:
		q.calls++
		code, err := a.blockingGet(ctx, a.url(s), a.timeout(s))
		if err == nil {
			// requests prints the bare code: <Response [200]>
			*line = contract.AppendCall((*line)[:0], q.id, q.calls, strconv.Itoa(code))
			a.info(*line)
			err = statusError(code)
		}
		if err != nil {
			return &callError{n: q.calls, err: err}
		}
	case appspec.Sleep:
		if ctx.Done() == nil {
			time.Sleep(s.Duration)
			return nil
		}
		t := time.NewTimer(s.Duration)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	case appspec.CPU:
		burnCPU(ctx, s.Duration)
	case appspec.Log:
		for i := 1; i <= s.Lines; i++ {
			*line = contract.AppendLogStep((*line)[:0], q.id, i, s.Lines)
			a.info(*line)
		}
	}
	return nil
}

// blockingGet is one `requests.Session().request("GET", ...)`: a fresh
// client and connection per call, read to the end, then dropped.
func (a *app) blockingGet(ctx context.Context, url string, timeout time.Duration) (int, error) {
	// Headers are bounded like the async client's whole response (net/http
	// would read 10 MB of them).
	transport := &http.Transport{DisableKeepAlives: true, Proxy: nil, MaxResponseHeaderBytes: maxExternalBody}
	defer transport.CloseIdleConnections()
	c := &http.Client{Transport: transport, Timeout: timeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxExternalBody+1)); err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	} else if n > maxExternalBody { // an endless body too: a bad answer, as in async mode
		return 0, fmt.Errorf("response body exceeds the limit of %d bytes", maxExternalBody)
	}
	return resp.StatusCode, nil
}

// url is where a call step goes.
func (a *app) url(s *appspec.Step) string {
	if s.URL != "" {
		return s.URL
	}
	return a.external
}

// timeout is a call step's own, else --external-timeout.
func (a *app) timeout(s *appspec.Step) time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return a.cfg.ExternalTimeout
}

// cpuSink keeps burnCPU's arithmetic from being optimised away.
var cpuSink atomic.Uint64

// burnCPU computes on the calling goroutine for d (or until ctx ends):
// real CPU work, as a Python loop on time.perf_counter() is, not a sleep.
func burnCPU(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	x := uint64(1)
	for ctx.Err() == nil && time.Now().Before(end) {
		for range 1000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	cpuSink.Store(x)
}

// callError names which of the request's calls failed.
type callError struct {
	n   int
	err error
}

func (e *callError) Error() string { return fmt.Sprintf("external API call %d: %v", e.n, e.err) }
func (e *callError) Unwrap() error { return e.err }

func statusError(code int) error {
	if code >= 200 && code < 300 {
		return nil
	}
	return fmt.Errorf("external API answered %d %s", code, http.StatusText(code))
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, client.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout())
}
