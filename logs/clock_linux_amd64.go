package logs

import (
	"syscall"
	"time"
)

// wallClock is time.Now for a log line's timestamp, which needs the wall
// clock alone: one read of it instead of time.Now's two (wall and
// monotonic), through the vDSO as time.Now's are — Go's gettimeofday on
// linux/amd64 calls the vDSO's. A worker reads it once per access line,
// and in a virtual machine a clock read is not cheap.
func wallClock() time.Time {
	var tv syscall.Timeval
	if syscall.Gettimeofday(&tv) != nil {
		return time.Now()
	}
	return time.Unix(tv.Sec, tv.Usec*1000)
}
