package logs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"demo/internal/testkit"
)

// The Sink's tests use real pipes, terminals, sockets and files: what the
// kernel does when a reader stops or leaves is the point.

// pipeSink returns a Sink on a new pipe's write end and a function that,
// once the Sink is closed, reads everything that went through.
func pipeSink(t testing.TB, cfg SinkConfig) (*Sink, func() string) {
	t.Helper()
	s, r := readPipe(t, cfg)
	return s, func() string {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// stalledPipe returns a pipe nobody reads yet, made small (one page), and
// a Sink on it.
func stalledPipe(t testing.TB, cfg SinkConfig) (*Sink, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { s.Close(); r.Close() })
	return s, r
}

// readPipe returns a Sink on a new pipe and the pipe's read end, for a
// test to read as it goes.
func readPipe(t testing.TB, cfg SinkConfig) (*Sink, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // the Sink holds its own descriptor
	t.Cleanup(func() { s.Close(); r.Close() })
	return s, r
}

func devNullSink(t testing.TB, cfg SinkConfig) *Sink {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { s.Close() })
	return s
}

func line(i int) []byte { return fmt.Appendf(nil, "line %06d %s\n", i, strings.Repeat("x", 50)) }

// writeLines writes n lines from another goroutine and fails if that takes
// longer than within: Write must never wait for the reader.
func writeLines(t *testing.T, s *Sink, from, n int, within time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := from; i < from+n; i++ {
			s.Write(line(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("writing %d lines took over %v: Write waited for the reader", n, within)
	}
}

// TestSinkDropsAndCountsWhileTheReaderStalls is `demo serve 2>&1 | less`
// with less paused: Write never waits, lines beyond the limit are dropped
// and counted, and once the reader reads again everything held comes out
// in order, followed by the report of how many were dropped.
func TestSinkDropsAndCountsWhileTheReaderStalls(t *testing.T) {
	reported := make(chan uint64, 1)
	var s *Sink
	s, r := stalledPipe(t, SinkConfig{Limit: 64 << 10, Report: func(n uint64) {
		fmt.Fprintf(s, "dropped %d\n", n)
		reported <- n
	}})
	const n = 20000 // 1.3 MB of lines: 20 times the limit
	writeLines(t, s, 0, n, 5*time.Second)
	dropped := s.Dropped()
	if dropped == 0 || dropped >= n {
		t.Fatalf("%d of %d lines dropped, want some but not all", dropped, n)
	}
	// Sync gives up on the stalled reader, and at once the second time.
	start := time.Now()
	s.Sync()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Sync waited %v for a stalled reader", el)
	}
	start = time.Now()
	s.Sync()
	if el := time.Since(start); el > syncPatience {
		t.Errorf("second Sync on a stuck writer waited %v, want no wait", el)
	}

	// The reader comes back.
	got := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.HasPrefix(sc.Text(), "dropped") {
				break
			}
		}
		got <- lines
	}()
	var lines []string
	select {
	case lines = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no report after the reader came back")
	}
	if n := <-reported; n != dropped {
		t.Errorf("reported %d dropped lines, counted %d", n, dropped)
	}
	kept := lines[:len(lines)-1]
	if uint64(len(kept))+dropped != n {
		t.Errorf("%d lines came out and %d were dropped, of %d", len(kept), dropped, n)
	}
	// What came out is whole lines, in order, with gaps where lines were
	// dropped: the Sink drops whole lines when full, never cuts one.
	prev := -1
	for _, l := range kept {
		var i int
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil || l != strings.TrimSuffix(string(line(i)), "\n") || i <= prev {
			t.Fatalf("line %q after line %d", l, prev)
		}
		prev = i
	}
	if !strings.HasPrefix(kept[0], "line 000000 ") || len(kept) < 2 {
		t.Errorf("first line out %q, %d lines", kept[0], len(kept))
	}
	if last := lines[len(lines)-1]; last != fmt.Sprintf("dropped %d", dropped) {
		t.Errorf("last line %q", last)
	}
}

// TestSinkWriteLineDropsWholeLines: a line formatted in place is taken
// like a Write — dropped and counted, without being formatted, once the
// limit is reached or the Sink is closed.
func TestSinkWriteLineDropsWholeLines(t *testing.T) {
	s, r := stalledPipe(t, SinkConfig{Limit: 10 * 100})
	formatted := 0
	fill := func(b []byte) []byte {
		formatted++
		return append(b, line(formatted)...) // 62 bytes
	}
	const n = 100
	for range n {
		s.writeLine(100, fill) // reserves 100 bytes: 10 fit within the limit
	}
	// The writer empties the buffer into the one-page pipe as lines come,
	// so more than 10 may fit; the rest are counted, none formatted.
	if dropped := s.Dropped(); dropped == 0 || uint64(formatted)+dropped != n {
		t.Errorf("%d lines formatted, %d dropped, of %d", formatted, dropped, n)
	}
	before := s.Dropped()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	s.writeLine(100, fill)
	if s.Dropped() != before+1 {
		t.Errorf("a line after Close: dropped %d, want %d", s.Dropped(), before+1)
	}
}

// TestSinkReportsOnlyOnceCaughtUp: the report comes after the lines held
// when the last one was dropped, not while the reader is still behind.
func TestSinkReportsOnlyOnceCaughtUp(t *testing.T) {
	var reports sync.WaitGroup
	reports.Add(1)
	s, r := stalledPipe(t, SinkConfig{Limit: 16 << 10, Report: func(uint64) { reports.Done() }})
	writeLines(t, s, 0, 2000, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	s.mu.Lock()
	unreported := s.unreported
	s.mu.Unlock()
	if unreported == 0 {
		t.Fatal("nothing dropped")
	}
	go io.Copy(io.Discard, r)
	reports.Wait() // a second report would panic: negative WaitGroup counter
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unreported != 0 || s.written < s.lastDrop {
		t.Errorf("reported with %d lines unreported, %d of %d bytes written", s.unreported, s.written, s.lastDrop)
	}
}

// TestSinkSyncWritesEverythingForALiveReader: Sync is what makes a line
// appear before a worker blocks on purpose.
func TestSinkSyncWritesEverythingForALiveReader(t *testing.T) {
	s, r := readPipe(t, SinkConfig{Batch: time.Hour})
	s.Write([]byte("before the blocking call\n"))
	s.Sync()
	r.SetReadDeadline(time.Now().Add(time.Second)) // it is in the pipe already, or Sync failed
	buf := make([]byte, 100)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "before the blocking call\n" {
		t.Fatalf("after Sync the pipe held %q (%v)", buf[:n], err)
	}
}

// TestSinkCloseFlushesASlowReader: a clean exit loses nothing while the
// reader reads, even slowly.
func TestSinkCloseFlushesASlowReader(t *testing.T) {
	s, r := stalledPipe(t, SinkConfig{Batch: 20 * time.Millisecond})
	const n = 5000 // 320 KiB, 80 times the pipe
	writeLines(t, s, 0, n, 5*time.Second)
	got := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 16<<10)
		for {
			time.Sleep(time.Millisecond) // a slow reader: ≈ 16 MB/s at most
			k, err := r.Read(buf)
			b.Write(buf[:k])
			if err != nil {
				got <- b.String()
				return
			}
		}
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out := <-got // EOF: Close closed the Sink's descriptor, the last writer
	if c := strings.Count(out, "\n"); c != n || s.Dropped() != 0 {
		t.Errorf("%d of %d lines out, %d dropped", c, n, s.Dropped())
	}
}

// TestSinkCloseGivesUpOnAStalledReader: exit is not held by a reader that
// stopped, and the writer goroutine ends.
func TestSinkCloseGivesUpOnAStalledReader(t *testing.T) {
	s, _ := stalledPipe(t, SinkConfig{})
	writeLines(t, s, 0, 1000, 5*time.Second)
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > closePatience+time.Second {
		t.Errorf("Close took %v with a stalled reader, want about %v", el, closePatience)
	}
	select {
	case <-s.done:
	default:
		t.Error("the writer goroutine is still running after Close")
	}
	writeLines(t, s, 0, 10, time.Second) // dropped, not written, not waited for
}

// TestSinkReaderGone is `demo serve 2>&1 | head`: once the reader is gone,
// writes are dropped; nothing waits, nothing dies (the Sink's descriptor
// is not 1 or 2, so Go reports EPIPE instead of raising SIGPIPE; see
// TestSIGPIPEOnStderr for stderr itself).
func TestSinkReaderGone(t *testing.T) {
	s, r := stalledPipe(t, SinkConfig{})
	s.Write([]byte("read\n"))
	s.Sync()
	r.Close()
	writeLines(t, s, 0, 100, 5*time.Second)
	s.Sync()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		gone := s.gone
		s.mu.Unlock()
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Sink did not notice its reader is gone")
		}
		s.Write([]byte("more\n"))
		s.Sync()
	}
	before := s.Dropped()
	writeLines(t, s, 0, 10, time.Second)
	if s.Dropped() != before+10 {
		t.Errorf("after the reader left, 10 more lines made the count %d → %d", before, s.Dropped())
	}
}

// TestSinkOnAPipeWithoutReader: the reader left before the process
// started its logger.
func TestSinkOnAPipeWithoutReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	s, err := NewSink(w, SinkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, s, 0, 10, time.Second)
	s.Sync() // the first write finds the reader gone
	if s.Dropped() != 10 {
		t.Errorf("%d dropped, want 10", s.Dropped())
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

// TestSinkOnATerminalThatIsNotRead: a terminal whose output nobody reads
// (a paused terminal, Ctrl+S) fills up like a pipe.
func TestSinkOnATerminalThatIsNotRead(t *testing.T) {
	ptm, pts := testkit.OpenPTY(t)
	defer ptm.Close()
	s, err := NewSink(pts, SinkConfig{Limit: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	pts.Close()
	defer s.Close()
	writeLines(t, s, 0, 5000, 5*time.Second)
	if s.Dropped() == 0 {
		t.Error("nothing dropped: the terminal took 320 KiB unread?")
	}
	// Reading the terminal again lets the held lines out.
	go io.Copy(io.Discard, ptm)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		caughtUp := s.written == s.accepted
		s.mu.Unlock()
		if caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held lines did not go out once the terminal was read")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSinkOnAStreamSocket is systemd's journal: stderr is a unix stream
// socket, written with MSG_DONTWAIT so that its shared file description
// stays blocking for everyone else.
func TestSinkOnAStreamSocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	reader, writer := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "stderr")
	defer reader.Close()
	s, err := NewSink(writer, SinkConfig{Limit: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.out.socket {
		t.Fatal("a stream socket is not written as one")
	}
	writeLines(t, s, 0, 20000, 5*time.Second)
	if s.Dropped() == 0 {
		t.Error("nothing dropped: the socket took 1.3 MB unread?")
	}
	if fl, err := unix.FcntlInt(writer.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("the inherited socket's flags changed: %#x (%v)", fl, err)
	}
	writer.Close()
}

// TestSinkOnAFile: a regular file takes everything, and Close flushes it.
func TestSinkOnAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(f, SinkConfig{Batch: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeLines(t, s, 0, 1000, 5*time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c := bytes.Count(b, []byte("\n")); c != 1000 || s.Dropped() != 0 {
		t.Errorf("%d lines in the file, %d dropped", c, s.Dropped())
	}
}

// TestSinkLeavesTheSharedDescriptionAlone: the pipe's file description is
// shared with the shell and the other processes; O_NONBLOCK on it would be
// theirs too.
func TestSinkLeavesTheSharedDescriptionAlone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	s, err := NewSink(w, SinkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fl, err := unix.FcntlInt(w.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("inherited pipe flags %#x (%v), want blocking as it was", fl, err)
	}
	if fl, err := unix.FcntlInt(uintptr(s.out.fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("the Sink's own descriptor has flags %#x (%v), want non-blocking", fl, err)
	}
}

// TestSIGPIPEOnStderr checks, with real processes, what the Go runtime does
// on a write to a pipe whose reader is gone: on fd 2 it kills the process
// with SIGPIPE unless SIGPIPE is ignored (signal.Ignore, as main does); on
// the Sink's own descriptor, the write fails with EPIPE either way.
func TestSIGPIPEOnStderr(t *testing.T) {
	if os.Getenv("LOGS_SIGPIPE_HELPER") != "" {
		return
	}
	for _, tc := range []struct {
		how        string
		wantSignal bool
	}{
		{"stderr", true},
		{"stderr-ignoring-sigpipe", false},
		{"sink", false},
	} {
		t.Run(tc.how, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r.Close() // the reader is gone
			cmd := exec.Command(os.Args[0], "-test.run=^TestSIGPIPEHelper$")
			cmd.Env = append(os.Environ(), "LOGS_SIGPIPE_HELPER="+tc.how)
			cmd.Stderr = w
			var out bytes.Buffer
			cmd.Stdout = &out
			err = cmd.Run()
			w.Close()
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if got := ws.Signaled() && ws.Signal() == syscall.SIGPIPE; got != tc.wantSignal {
				t.Errorf("killed by SIGPIPE: %v, want %v (%v, output %q)", got, tc.wantSignal, err, out.String())
			}
			if !tc.wantSignal && !strings.Contains(out.String(), "survived") {
				t.Errorf("helper did not finish: %v, output %q", err, out.String())
			}
		})
	}
}

// TestSIGPIPEHelper is the process TestSIGPIPEOnStderr starts.
func TestSIGPIPEHelper(t *testing.T) {
	how := os.Getenv("LOGS_SIGPIPE_HELPER")
	switch how {
	case "":
		t.Skip("helper process for TestSIGPIPEOnStderr")
	case "stderr", "stderr-ignoring-sigpipe":
		if how == "stderr-ignoring-sigpipe" {
			signal.Ignore(syscall.SIGPIPE)
		}
		_, err := os.Stderr.Write([]byte("to nobody\n"))
		fmt.Printf("survived: %v\n", err)
	case "sink":
		l, err := New(Config{Format: Console, Level: 0})
		if err != nil {
			fmt.Println(err)
			return
		}
		for range 100 {
			l.Info("to nobody")
		}
		l.Close()
		fmt.Printf("survived: %d dropped\n", l.Dropped())
	}
	os.Exit(0)
}

// sharedPipe is stderr as the master and its workers share it: a pipe
// with room for one page, written by n Sinks of their own — write runs in
// a goroutine per sink, then every sink closes — and read slowly, less
// than a batch at a time, so that the writers race for room. It returns
// the lines read.
func sharedPipe(t *testing.T, n int, write func(k int, s *Sink)) []string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	var sinks []*Sink
	for range n {
		s, err := NewSink(w, SinkConfig{Batch: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, s)
	}
	w.Close()
	got := make(chan []string, 1)
	go func() {
		defer r.Close()
		var lines []string
		var rest []byte
		buf := make([]byte, 1000)
		for {
			n, err := r.Read(buf)
			rest = append(rest, buf[:n]...)
			for {
				i := bytes.IndexByte(rest, '\n')
				if i < 0 {
					break
				}
				lines = append(lines, string(rest[:i]))
				rest = rest[i+1:]
			}
			if err != nil {
				got <- lines
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	for k, s := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(k, s)
		}()
	}
	wg.Wait()
	for _, s := range sinks {
		s.Close()
	}
	return <-got
}

// TestSinksSharingAPipeNeverCutLines: the master and every worker write to
// one pipe, each through a Sink of its own; a slow reader leaves room for a
// few lines at a time, and still every line comes out whole.
func TestSinksSharingAPipeNeverCutLines(t *testing.T) {
	const n = 2000
	lines := sharedPipe(t, 3, func(k int, s *Sink) {
		for i := range n {
			fmt.Fprintf(s, "%c %06d %s\n", 'A'+k, i, strings.Repeat("x", 50+i%37))
		}
	})
	next := map[byte]int{}
	for _, l := range lines {
		var who byte
		var i int
		if _, err := fmt.Sscanf(l, "%c %d", &who, &i); err != nil || l != fmt.Sprintf("%c %06d %s", who, i, strings.Repeat("x", 50+i%37)) || i != next[who] {
			t.Fatalf("line %q cut or out of order (want %c %06d next)", l, who, next[who])
		}
		next[who]++
	}
	if len(lines) != 3*n {
		t.Errorf("%d lines, want %d", len(lines), 3*n)
	}
}

// TestCloseReportsDropsOnceCaughtUp: a reader that catches up only as the
// process exits still hears how many lines were dropped, once.
func TestCloseReportsDropsOnceCaughtUp(t *testing.T) {
	var s *Sink
	s, r := stalledPipe(t, SinkConfig{Limit: 16 << 10, Report: func(n uint64) { fmt.Fprintf(s, "dropped %d\n", n) }})
	writeLines(t, s, 0, 1000, 5*time.Second)
	out := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	s.Close()
	text := <-out
	if c := strings.Count(text, "dropped "); c != 1 || !strings.HasSuffix(text, fmt.Sprintf("dropped %d\n", s.Dropped())) {
		t.Errorf("%d reports; output ends %q, %d dropped", c, text[max(0, len(text)-60):], s.Dropped())
	}
}

func TestEntriesWithin(t *testing.T) {
	for _, tc := range []struct {
		p     string
		limit int
		want  int
	}{
		{"a\nb\nc\n", 4, 4},                        // two whole lines fit
		{"a\n b\n c\nd\n", 9, 8},                   // the entry "a" with two continuation lines, not "d"
		{"a\n b\n c\nd\n", 7, 5},                   // the entry does not fit: cut between its lines
		{"abcdef\n", 3, 7},                         // one line longer than limit goes whole
		{"ab\ncd\n\tef\n", 6, 3},                   // "cd" continues: end after "ab"
		{"xxxxxx\n\tyy\n\tzz\nnext\n", 12, 10 + 1}, // an entry longer than limit: between its lines
	} {
		if got := entriesWithin([]byte(tc.p), tc.limit); got != tc.want {
			t.Errorf("entriesWithin(%q, %d) = %d, want %d", tc.p, tc.limit, got, tc.want)
		}
	}
}

// TestSinksSharingAPipeKeepEntriesWhole: a multi-line entry (a message and
// a stack under it, its lines indented) is written in one piece even when
// other processes write to the same pipe at the same time and the pipe has
// room for only a few lines: the continuation lines follow their message.
func TestSinksSharingAPipeKeepEntriesWhole(t *testing.T) {
	const n = 300
	entry := func(k, i int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%c %04d stack:\n", 'A'+k, i)
		for j := range 5 + i%25 { // up to 30 continuation lines, < PIPE_BUF
			fmt.Fprintf(&b, "\t%c %04d frame %02d %s\n", 'A'+k, i, j, strings.Repeat("x", 60))
		}
		return b.String()
	}
	lines := sharedPipe(t, 3, func(k int, s *Sink) {
		for i := range n {
			if i%3 == 0 {
				_, _ = s.Write([]byte(entry(k, i)))
			} else {
				fmt.Fprintf(s, "%c %04d plain line\n", 'A'+k, i)
			}
		}
	})
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasSuffix(l, " stack:") {
			continue
		}
		var who byte
		var at int
		fmt.Sscanf(l, "%c %d", &who, &at)
		want := strings.Split(strings.TrimSuffix(entry(int(who-'A'), at), "\n"), "\n")
		if i+len(want) > len(lines) || strings.Join(lines[i:i+len(want)], "\n") != strings.Join(want, "\n") {
			t.Fatalf("entry %c %04d cut apart:\n%s", who, at, strings.Join(lines[i:min(i+len(want), len(lines))], "\n"))
		}
		i += len(want) - 1
	}
	if total := strings.Count(strings.Join(lines, "\n"), "\n") + 1; total < 3*n {
		t.Errorf("%d lines, want at least %d", total, 3*n)
	}
}

// TestSinkGrowsADefaultPipe: a pipe of the kernel's default size is grown
// so that a busy worker's batch goes in at once; one sized on purpose (the
// stalled pipes above) is left as it is.
func TestSinkGrowsADefaultPipe(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set, want int
	}{
		{"default", 0, pipeSize},
		{"chosen", 4096, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if tc.set > 0 {
				if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, tc.set); err != nil {
					t.Fatal(err)
				}
			}
			s, err := NewSink(w, SinkConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := unix.FcntlInt(w.Fd(), unix.F_GETPIPE_SZ, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("pipe holds %d bytes, want %d", got, tc.want)
			}
			w.Close()
		})
	}
}
