// Package contract is what crosses a process boundary. Between the master
// (supervisor) and a worker process: which file descriptors a worker
// inherits, which environment variables it reads, and the messages that
// travel on the status pipe (this file); both sides import it and nothing
// else of each other. Between demo and the tools that run it (experiment,
// bench, the tests): the handler modes they pass on (mode.go), and the log
// lines they read — readiness, request starts, loop stalls — as console
// text and as the fields of JSON entries (logs.go).
package contract

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// File descriptors a worker inherits, in exec.Cmd.ExtraFiles order (fd 3 is
// ExtraFiles[0]).
const (
	// ListenerFD is the listening socket the master bound once; every worker
	// accepts on it.
	ListenerFD = 3
	// StatusFD is the write end of a pipe the master reads: the worker sends
	// Msg lines on it (ready, heartbeats).
	StatusFD = 4
	// LifelineFD is the read end of a pipe whose write end only the master
	// holds. The master writes one byte (Ping) every HeartbeatInterval; a
	// goroutine beside the worker's loop answers each with an Alive message,
	// which proves the process lives even while its loop is blocked. EOF
	// means the master is gone: the worker's second line of defence after
	// PR_SET_PDEATHSIG.
	LifelineFD = 5
)

// Ping is the byte the master writes on the lifeline.
const Ping byte = 'p'

// HeartbeatInterval is how often the master pings and how often a worker's
// loop sends Beat. A loop that has not beaten for a few intervals is stalled.
const HeartbeatInterval = 500 * time.Millisecond

// EnvMasterPID names the variable that carries the master's pid. A worker
// refuses to run unless it equals its parent pid, so `demo worker` typed by
// hand fails clearly instead of serving on a random fd 3.
const EnvMasterPID = "DEMO_MASTER_PID"

// ExitStartupFailure is the exit code of a worker that cannot start at all
// (unusable socket, bad configuration). The master stops instead of
// respawning it forever, like Gunicorn's WORKER_BOOT_ERROR.
const ExitStartupFailure = 3

// Kind names a message on the status pipe.
type Kind string

const (
	// Ready: the worker's loop is running and its listener is registered.
	Ready Kind = "ready"
	// Beat: the loop goroutine itself is alive; Value is the Unix time in
	// nanoseconds at which the loop sent it. Only the loop sends it, from a
	// loop timer, so a blocked loop stops beating.
	Beat Kind = "beat"
	// Alive: the process answers a Ping (Value: Unix nanoseconds). It is sent
	// beside the loop, so it keeps coming while the loop is blocked. Text,
	// if any, is a LoopStats (JSON) with the loop's counters as the loop
	// last published them: true while it is blocked, since a blocked loop
	// changes none of them.
	Alive Kind = "alive"
	// Retire: the worker served its --limit-max-requests and asks for a
	// replacement; it keeps serving until the master sends SIGTERM, so no
	// request is refused meanwhile. Value: requests served.
	Retire Kind = "retire"
	// Stall: the worker's blocked-loop detector, from beside the blocked
	// loop: Value is how long it has been blocked (ns), Text what the loop
	// is doing and where ("GET / (request …) at worker.(*app).mixed → …").
	// The next Beat (or StallEnd) means the stall is over.
	Stall Kind = "stall"
	// StallEnd: from the loop goroutine, as a callback the detector timed
	// returns: Value is how long it held the loop (ns), Text what it was
	// (its label). The master takes this figure as the stall's length, so
	// that its numbers and the worker's log agree; being sent from the
	// loop, it also proves the loop moves again.
	StallEnd Kind = "stall-end"
	// Stack: the worker's answer to SIGABRT, which the master sends a
	// worker whose loop stalled past --timeout: Text is an AbortReport
	// as JSON (a message is one line). The worker ends itself right after.
	Stack Kind = "stack"
)

// AbortReport is what a worker says when aborted: what its loop was
// running — the request, even with the blocked-loop detector off — and
// the loop goroutine's stack, trimmed to the stuck callback.
type AbortReport struct {
	Label string `json:"label,omitempty"` // e.g. "GET / (request 42)"
	Stack string `json:"stack"`
}

// LoopStats rides on every Beat (as JSON in Msg.Text): what the loop has
// done, for `demo status`. Stall figures come from the worker's own
// blocked-loop detector.
type LoopStats struct {
	Requests     uint64        `json:"requests"`
	InFlight     int           `json:"in_flight"`
	Conns        int           `json:"conns"`
	LongestStall time.Duration `json:"longest_stall_ns,omitempty"`
	Culprit      string        `json:"culprit,omitempty"` // what the longest stall was doing, and where
	// LogLinesDropped counts the worker's log lines dropped because its
	// stderr was not being read (or no more at all): logging never waits.
	LogLinesDropped uint64 `json:"log_lines_dropped,omitempty"`
	// Seq numbers each publication of Requests, InFlight and Conns by the
	// loop: Beat and Alive both carry them, from two goroutines, and the
	// master keeps the latest.
	Seq uint64 `json:"seq,omitempty"`
}

// Msg is one line on the status pipe: "<kind> <value>[ <text>]\n". Text
// is optional and never contains a newline (JSON for structured payloads).
type Msg struct {
	Kind  Kind
	Value int64
	Text  string
}

// MaxMsg bounds an encoded message: below PIPE_BUF (4096 on Linux), so one
// write is atomic even when several goroutines of a worker send at once.
const MaxMsg = 4000

// Encode renders m as one line, cutting Text to keep it under MaxMsg.
func (m Msg) Encode() []byte {
	b := make([]byte, 0, 32+len(m.Text))
	b = append(b, m.Kind...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, m.Value, 10)
	if m.Text != "" {
		text := strings.ReplaceAll(m.Text, "\n", " ")
		if room := MaxMsg - len(b) - 2; len(text) > room {
			text = text[:room]
		}
		b = append(b, ' ')
		b = append(b, text...)
	}
	return append(b, '\n')
}

// Reader decodes Msg lines from the status pipe.
type Reader struct{ sc *bufio.Scanner }

// NewReader reads messages from r.
func NewReader(r io.Reader) *Reader { return &Reader{sc: bufio.NewScanner(r)} }

// Next returns the next message, or io.EOF once the worker closed its end.
func (r *Reader) Next() (Msg, error) {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			return Msg{}, fmt.Errorf("read status pipe: %w", err)
		}
		return Msg{}, io.EOF
	}
	kind, rest, _ := strings.Cut(r.sc.Text(), " ")
	val, text, _ := strings.Cut(rest, " ")
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		return Msg{}, fmt.Errorf("bad status line %q: %w", r.sc.Text(), err)
	}
	return Msg{Kind: Kind(kind), Value: n, Text: text}, nil
}
