package control

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// Render prints s as the `demo status` table. Every string the master
// sent is printed without its control characters (see clean).
func Render(w io.Writer, s Snapshot) error {
	noun := "workers"
	if len(s.Workers) == 1 {
		noun = "worker"
	}
	fmt.Fprintf(w, "master %d · %s · %d %s\n", s.MasterPID, clean(s.Addr), len(s.Workers), noun)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tSTATE\tUPTIME\tREQUESTS\tIN FLIGHT\tCONNS\tSTALLED NOW\tLONGEST STALL\tRSS\tCULPRIT")
	// By slot, as the master numbers them: a replacement's row sits with
	// its slot, not at the end. A slot's old and new process stay in the
	// order they came.
	workers := slices.Clone(s.Workers)
	slices.SortStableFunc(workers, func(a, b Worker) int { return cmp.Compare(a.Index, b.Index) })
	for _, wk := range workers {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n",
			wk.Index, wk.PID, dash(clean(wk.State)), short(wk.Uptime), wk.Requests, wk.InFlight, wk.Conns,
			stall(wk.StalledFor), stall(wk.LongestStall), mib(wk.RSS), dash(clean(wk.Culprit)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return renderDropped(w, s)
}

// renderDropped adds a line naming who dropped log lines, if anyone did:
// a reader of stderr that does not keep up costs lines, never a stall.
func renderDropped(w io.Writer, s Snapshot) error {
	var who []string
	if s.LogLinesDropped > 0 {
		who = append(who, fmt.Sprintf("master %d", s.LogLinesDropped))
	}
	for _, wk := range s.Workers {
		if wk.LogLinesDropped > 0 {
			who = append(who, fmt.Sprintf("worker %d [%d] %d", wk.Index, wk.PID, wk.LogLinesDropped))
		}
	}
	if len(who) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "log lines dropped because stderr was not being read: %s\n", strings.Join(who, " · "))
	return err
}

// clean strips what could drive a terminal from a string another process
// sent: C0 and C1 control characters (ESC starts an escape sequence, and
// so does U+009B), DEL, and the bidirectional overrides that reorder what
// the eye sees; invalid UTF-8 becomes U+FFFD.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if !unsafeRune(r) {
			b.WriteRune(r) // RuneError stays, as U+FFFD
		}
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || // C0, DEL, C1
		(r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) // bidi embeddings, overrides, isolates
}

// short rounds a duration for a table cell: 1m02s, 3.4s, 12ms.
func short(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

func stall(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return short(d)
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func dash(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return "-"
	}
	return s
}
