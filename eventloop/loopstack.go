package eventloop

import (
	"fmt"
	"strings"
)

// LoopStack returns the loop goroutine's stack as a person reads it when
// the loop is stuck: its header ("goroutine 1 [select, locked to
// thread]:"), then, innermost first, each call's function and file:line,
// down to the loop machinery that ran the callback (not what started the
// loop), at most maxFrames of them. When there are more, the project's
// frames and the calls they made are kept first, then the loop frame that
// ran the callback, then the innermost ones; each run left out becomes one
// "… N frames" line. It returns "" while the loop is not running.
//
// It reads every goroutine's stack to find the loop's (the world stops
// briefly), so call it once per stall, not per callback.
func (l *Loop) LoopStack(maxFrames int) string {
	gid := l.gid.Load()
	if gid == 0 {
		return ""
	}
	return trimStack(goroutineStack(gid), projectPrefix, loopPrefix, maxFrames)
}

// frame is one call of a stack: its function and where it is.
type frame struct{ fn, at string }

// trimStack is LoopStack's work on one goroutine's stack as runtime.Stack
// prints it; project and loop are the prefixes culpritOf takes.
func trimStack(stack, project, loop string, maxFrames int) string {
	lines := strings.Split(strings.TrimRight(stack, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return ""
	}
	header := lines[0]
	var frames []frame // innermost first
	for i := 1; i < len(lines); i++ {
		fn := lines[i]
		if fn == "" || strings.HasPrefix(fn, "\t") || strings.HasPrefix(fn, "created by ") {
			continue
		}
		if j := strings.LastIndexByte(fn, '('); j > 0 {
			fn = fn[:j] // the arguments are pointers nobody can read
		}
		at := ""
		if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") {
			at = strings.TrimPrefix(lines[i+1], "\t")
			if j := strings.LastIndex(at, " +0x"); j > 0 {
				at = at[:j]
			}
			i++
		}
		frames = append(frames, frame{fn, at})
	}
	// Down to the innermost frame of the loop's machinery: below it is
	// what started the loop, the same in every stall.
	below := 0
	for i, f := range frames {
		if machinery(f.fn, loop) {
			below = len(frames) - i - 1
			frames = frames[:i+1]
			break
		}
	}
	keep := make([]bool, len(frames))
	kept := 0
	take := func(i int) {
		if i >= 0 && i < len(frames) && !keep[i] && kept < maxFrames {
			keep[i] = true
			kept++
		}
	}
	for i, f := range frames { // the project's calls and what each called
		if strings.HasPrefix(f.fn, project) && !machinery(f.fn, loop) {
			take(i)
			take(i - 1)
		}
	}
	if n := len(frames) - 1; n >= 0 && machinery(frames[n].fn, loop) {
		take(n) // the loop ran it: this is a callback, not the loop itself
	}
	for i := range frames { // then from where it waits, outwards
		take(i)
	}
	var b strings.Builder
	b.WriteString(header)
	skipped := 0
	flush := func() {
		if skipped > 0 {
			b.WriteString("\n… " + nFrames(skipped))
			skipped = 0
		}
	}
	for i, f := range frames {
		if !keep[i] {
			skipped++
			continue
		}
		flush()
		b.WriteString("\n" + f.fn)
		if f.at != "" {
			b.WriteString("\n\t" + f.at)
		}
	}
	skipped += below
	if skipped > 0 {
		b.WriteString("\n… " + nFrames(skipped) + ": the event loop and what started it")
	}
	return b.String()
}

// machinery reports whether fn belongs to the loop's own packages (loop is
// "demo/eventloop."): the loop, its server, its client delivering a
// response — as culpritOf tells them.
func machinery(fn, loop string) bool {
	return strings.HasPrefix(fn, loop) || strings.HasPrefix(fn, strings.TrimSuffix(loop, ".")+"/")
}

func nFrames(n int) string {
	if n == 1 {
		return "1 frame"
	}
	return fmt.Sprintf("%d frames", n)
}
