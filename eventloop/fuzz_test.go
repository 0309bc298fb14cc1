package eventloop

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzServerFraming is the differential test of the server's HTTP/1.1
// framing. It sends arbitrary bytes to a real server connection, cut into
// pieces at fuzzed points (the loop reads each piece before the next is
// sent), and holds what comes back to the reference (reference_test.go:
// net/http's ReadRequest plus its server's own checks) twice:
//
//   - before the client half-closes: every request the reference decides
//     on with the bytes so far must be answered already — accepted with the
//     same method, target, version, Host, URL, header fields (canonical
//     keys, values in order), body, trailer and keep-alive decision, or
//     refused with a status of the same class — and nothing more;
//   - after it half-closes: the same, for the whole input, and then the
//     server closes cleanly (FIN, never a reset that could destroy an
//     answer).
//
// Small limits let short inputs reach the 413 and 431 paths. Long runs by
// hand: go test ./eventloop -run XXX -fuzz FuzzServerFraming -fuzztime 30m
func FuzzServerFraming(f *testing.F) {
	for _, seed := range framingSeeds {
		f.Add([]byte(seed.data), uint16(len(seed.data)/2))
	}
	// The server's own parser, and net/http's behind NetHTTPParser: both
	// are held to the reference.
	ours := startServerWith(f, fuzzConfig, echoHandler)
	netHTTP := startServerWith(f, fuzzConfigNetHTTP, echoHandler)
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		cuts := splitPoints(len(data), split)
		checkFraming(ours.with(t), fuzzLimits, data, cuts)
		checkFraming(netHTTP.with(t), fuzzLimits, data, cuts)
	})
}

var (
	fuzzConfig        = ServerConfig{MaxHeaderBytes: 512, MaxBodyBytes: 256}
	fuzzConfigNetHTTP = ServerConfig{MaxHeaderBytes: 512, MaxBodyBytes: 256, NetHTTPParser: true}
	fuzzLimits        = refLimits{maxHeader: 512, maxBody: 256}
)

// splitPoints turns the fuzzed split into cut points: split itself (modulo
// the length), as the corpus has always meant it, and up to three more
// drawn from it.
func splitPoints(n int, split uint16) []int {
	cuts := []int{int(split) % (n + 1)}
	rng := rand.New(rand.NewPCG(uint64(split), 0x5eed))
	for range split >> 14 {
		cuts = append(cuts, rng.IntN(n+1))
	}
	slices.Sort(cuts)
	return slices.Compact(cuts)
}

// echoHandler answers every request 200 with what it saw (echoRequest,
// base64 in X-Echo, so HEAD answers carry it too); targets starting with
// /a are answered from a timer, later.
func echoHandler(ts *testServer) Handler {
	return func(w *ResponseWriter, r *Request) {
		hdr := r.Header.Clone()
		delete(hdr, "Host") // net/http's server removes it; Host is echoed on its own
		echo := echoRequest(r.Method, r.Target, r.Proto, r.Host, r.URL, hdr, r.Trailer, r.Body)
		w.Header().Set("X-Echo", base64.StdEncoding.EncodeToString([]byte(echo)))
		if strings.HasPrefix(r.Target, "/a") {
			ts.loop.AfterFunc(0, func() { w.Respond(200, "text/plain", nil) })
			return
		}
		w.Respond(200, "text/plain", nil)
	}
}

// answer is one final response as the client read it.
type answer struct {
	status int
	echo   string
	close  bool
}

// checkFraming sends data in pieces ending at cuts and compares the server's
// answers with the reference's verdicts, before and after the client's EOF.
func checkFraming(ts *testServer, lim refLimits, data []byte, cuts []int) {
	t := ts.tb
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		if cut == prev {
			continue
		}
		// The server may have answered and closed already (a 400 early in
		// the input): a failing write is not the server's fault.
		if _, err := c.Write(data[prev:cut]); err != nil {
			break
		}
		prev = cut
		ts.barrier()
	}
	ts.barrier()
	early, closed := recvAvailable(t, c)
	want := reference(data, false, lim)
	got, rest := readAnswers(t, early, want)
	if len(rest) > 0 {
		t.Fatalf("a partial answer %q after the loop went idle", rest)
	}
	if err := diffVerdicts(want, got, false); err != nil {
		t.Fatalf("with more bytes to come, input %q: %v", data, err)
	}
	if last := len(got) - 1; last >= 0 && got[last].close != closed {
		t.Fatalf("answer %d says Connection: close %v, but the server closed: %v\nanswers: %q", last, got[last].close, closed, early)
	}
	if !closed && len(got) > 0 && got[len(got)-1].close {
		t.Fatal("a closing answer, and the server did not close")
	}

	_ = c.(*net.TCPConn).CloseWrite()
	tail, err := io.ReadAll(c)
	out := append(early, tail...)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server neither answered nor closed within 5s; got %q", out)
		}
		t.Fatalf("reading answers: %v (a reset can destroy answers); got %q", err, out)
	}
	want = reference(data, true, lim)
	got, rest = readAnswers(t, out, want)
	if len(rest) > 0 {
		t.Fatalf("bytes after the last answer: %q", rest)
	}
	if err := diffVerdicts(want, got, true); err != nil {
		t.Fatalf("after the client's EOF, input %q: %v", data, err)
	}
	c.Close()
	ts.eventually("the server to drop the connection", func() bool { return ts.srv.Stats().Conns == 0 })
}

// recvAvailable reads what the socket holds now, without waiting, and
// whether the server has closed its side.
func recvAvailable(t testing.TB, c net.Conn) (out []byte, eof bool) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				return
			case err != nil:
				rerr = err
				return
			case n == 0:
				eof = true
				return
			}
			out = append(out, buf[:n]...)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatalf("reading answers: %v (a reset can destroy answers); got %q", rerr, out)
	}
	return out, eof
}

// readAnswers parses the final responses in out (interim 100s skipped),
// each checked for what every response carries, and returns what is left.
func readAnswers(t testing.TB, out []byte, want []verdict) ([]answer, []byte) {
	t.Helper()
	return readAnswersFrom(t, out, want, true)
}

// readAnswersFrom is readAnswers; ours says whether the answers come from
// this server, whose own must carry Date, Server, Content-Length and a JSON
// error body.
func readAnswersFrom(t testing.TB, out []byte, want []verdict, ours bool) ([]answer, []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(out))
	var got []answer
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return got, nil
		}
		method := http.MethodGet
		if i := len(got); i < len(want) && want[i].method != "" {
			method = want[i].method
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			rest, _ := io.ReadAll(br)
			return got, rest
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d: body: %v\nall answers: %q", len(got), err, out)
		}
		if resp.StatusCode < 200 {
			if resp.StatusCode != http.StatusContinue {
				t.Fatalf("unexpected interim status %d", resp.StatusCode)
			}
			continue
		}
		if ours && (resp.Header.Get("Date") == "" || resp.Header.Get("Server") != "demo" || resp.Header.Get("Content-Length") == "") {
			t.Fatalf("answer %d lacks Date, Server or Content-Length: %v", len(got), resp.Header)
		}
		a := answer{status: resp.StatusCode, close: resp.Close}
		if a.status == http.StatusOK {
			echo, err := base64.StdEncoding.DecodeString(resp.Header.Get("X-Echo"))
			if err != nil {
				t.Fatalf("answer %d: X-Echo: %v", len(got), err)
			}
			a.echo = string(echo)
		} else if ours && method != http.MethodHead && !strings.HasPrefix(string(body), `{"error":`) &&
			!strings.HasPrefix(string(body), `{"detail":`) {
			t.Fatalf("answer %d: %d with body %q, want a JSON error", len(got), a.status, body)
		}
		got = append(got, a)
	}
}

// diffVerdicts holds the server's answers to the reference's verdicts and
// says how they differ, or returns nil.
func diffVerdicts(want []verdict, got []answer, eof bool) error {
	fail := func(format string, args ...any) error {
		var b strings.Builder
		fmt.Fprintf(&b, format, args...)
		for i, v := range want {
			b.WriteString("\n  reference " + strings.ReplaceAll(v.String(), "\n", "\n    "))
			if i < len(got) {
				b.WriteString("\n  server    " + strings.ReplaceAll(got[i].String(), "\n", "\n    "))
			}
		}
		for _, g := range got[min(len(got), len(want)):] {
			b.WriteString("\n  server    " + strings.ReplaceAll(g.String(), "\n", "\n    "))
		}
		return errors.New(b.String())
	}
	for i, v := range want {
		if i >= len(got) {
			if i == len(want)-1 && v.status != 0 && !v.hdrDone {
				return nil // a refusal the server may leave until the header block ends
			}
			return fail("the server gave %d answers, the reference %d", len(got), len(want))
		}
		g := got[i]
		switch {
		case v.status == 0 && g.status != http.StatusOK:
			return fail("answer %d: %d, the reference accepts", i, g.status)
		case v.status == 0 && g.echo != v.echo:
			return fail("answer %d: the handler saw another request", i)
		case v.status == 0 && g.close != v.close && !(eof && g.close && i == len(got)-1):
			// After the client's EOF the last answer may say close: nothing
			// more can come.
			return fail("answer %d: keep-alive decision differs", i)
		case v.status != 0 && g.status/100 != v.status/100:
			return fail("answer %d: %d, the reference refuses with %d", i, g.status, v.status)
		case v.status != 0 && !g.close:
			return fail("answer %d: a refusal without Connection: close", i)
		}
	}
	if len(got) > len(want) {
		return fail("the server gave %d answers, the reference %d", len(got), len(want))
	}
	return nil
}

func (a answer) String() string {
	if a.status != http.StatusOK {
		return fmt.Sprintf("status %d, close %v", a.status, a.close)
	}
	return verdict{close: a.close, echo: a.echo, hdrDone: true}.String()
}
