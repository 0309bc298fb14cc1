package control

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Render prints s as the `demo status` table.
func Render(w io.Writer, s Snapshot) error {
	fmt.Fprintf(w, "master %d · %s · %d workers\n", s.MasterPID, s.Addr, len(s.Workers))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tSTATE\tUPTIME\tREQUESTS\tIN FLIGHT\tCONNS\tSTALLED NOW\tLONGEST STALL\tRSS\tCULPRIT")
	for _, wk := range s.Workers {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n",
			wk.Index, wk.PID, wk.State, short(wk.Uptime), wk.Requests, wk.InFlight, wk.Conns,
			stall(wk.StalledFor), stall(wk.LongestStall), mib(wk.RSS), dash(wk.Culprit))
	}
	return tw.Flush()
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
