package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"
)

// burstAt opens n connections to url, then sends GET path (with the extra
// header lines, each ending in CRLF) on all of them at once and records the
// outcome in res.
func burstAt(ctx context.Context, url, path, extra string, n int, res *capacityResult) error {
	u, err := checkTarget(url)
	if err != nil {
		return err
	}
	t := time.Now()
	conns, dialErrs, firstDialErr := dialMany(ctx, u.Host, n)
	res.dialTime = time.Since(t)
	res.connected = len(conns)
	res.errors += dialErrs
	if res.firstErr == "" {
		res.firstErr = firstDialErr
	}
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: demo-bench\r\n" + extra + "\r\n")
	burst(ctx, req, conns, res)
	return ctx.Err()
}

// dialMany opens n connections to addr, a bounded number at a time.
func dialMany(ctx context.Context, addr string, n int) ([]net.Conn, int, string) {
	const parallel = 64
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, n)
		errs     int
		firstErr string
		wg       sync.WaitGroup
		next     = make(chan struct{})
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second}
			for range next {
				conn, err := d.DialContext(ctx, "tcp", addr)
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = "connect: " + err.Error()
					}
				} else {
					conns = append(conns, conn)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return conns, errs, firstErr
}

// burstAnswerBuffer is each connection's read buffer: an answer is a few
// hundred bytes (a longer one takes more reads, no error).
const burstAnswerBuffer = 512

// burst sends req on every connection at the same instant and reads each
// answer. Every connection's reader waits for its answer from before the
// burst, its buffer made and its goroutine parked in the runtime's poller,
// and one sender per CPU writes the requests one after another: sending
// then costs one write(2) per request. A goroutine per connection that
// wrote, then made its reader and read, cost a wake-up, an allocation and
// a read(2) that finds nothing yet per request, all inside the burst, and
// the time the bench takes to send counts against the server measured
// (docs/performance.md has the figures). Each request's own time, from its
// write to its answer, is recorded too: the server's share alone.
func burst(ctx context.Context, req []byte, conns []net.Conn, res *capacityResult) {
	// Generous: a request answered after this is an error, not a hang.
	deadline := time.Now().Add(3*res.budget() + 5*time.Second)
	n := len(conns)
	var (
		status   = make([]int, n)
		readErr  = make([]error, n)
		writeErr = make([]error, n)
		unsent   = make([]bool, n) // no reader: its deadline could not be set
		sentAt   = make([]time.Time, n)
		doneAt   = make([]time.Time, n)
		ready    sync.WaitGroup
		done     sync.WaitGroup
		fire     = make(chan struct{})
	)
	stop := context.AfterFunc(ctx, func() {
		for _, conn := range conns {
			_ = conn.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	for i, conn := range conns {
		if err := conn.SetDeadline(deadline); err != nil {
			readErr[i], doneAt[i], unsent[i] = err, time.Now(), true
			continue
		}
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			br := bufio.NewReaderSize(conn, burstAnswerBuffer)
			ready.Done()
			status[i], readErr[i] = readAnswer(br)
			doneAt[i] = time.Now()
		}()
	}
	senders := min(runtime.GOMAXPROCS(0), n)
	for s := range senders {
		done.Add(1)
		go func() {
			defer done.Done()
			<-fire
			for i := s; i < n; i += senders {
				if unsent[i] {
					continue
				}
				if _, err := conns[i].Write(req); err != nil {
					writeErr[i] = fmt.Errorf("write: %w", err)
					conns[i].Close() // its reader gives up
					continue
				}
				sentAt[i] = time.Now()
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(fire)
	done.Wait()

	var last, longest, sent time.Duration
	for i := range n {
		err := readErr[i]
		if writeErr[i] != nil {
			err = writeErr[i]
		}
		took := doneAt[i].Sub(t0)
		res.add(status[i], err)
		res.lat.record(took)
		last = max(last, took)
		if !sentAt[i].IsZero() {
			sent = max(sent, sentAt[i].Sub(t0))
			longest = max(longest, doneAt[i].Sub(sentAt[i]))
		}
	}
	res.wall, res.sent, res.longest = last, sent, longest
}

// roundTripOnce writes req on conn and reads one response with net/http's
// parser; it returns the status.
func roundTripOnce(conn net.Conn, req []byte, deadline time.Time) (int, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, err
	}
	if _, err := conn.Write(req); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	return readAnswer(bufio.NewReader(conn))
}

// readAnswer reads one response with net/http's parser; it returns the
// status.
func readAnswer(br *bufio.Reader) (int, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, nil
}
