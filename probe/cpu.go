package probe

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cpuSpan measures the CPU time of this whole process over a test, which
// is all getrusage can tell: the agent serves many sessions at once, and
// one session's goroutines cannot be told from another's. So a span also
// counts the most spans that overlapped it (itself included), and reports
// say whose CPU it is: the session's alone only when it had the process
// to itself.
type cpuSpan struct {
	r0       unix.Rusage
	sessions int
}

// openSpans are the spans begun and not yet ended in this process.
var openSpans struct {
	sync.Mutex
	set map[*cpuSpan]struct{}
}

func beginCPU() *cpuSpan {
	s := &cpuSpan{}
	openSpans.Lock()
	if openSpans.set == nil {
		openSpans.set = make(map[*cpuSpan]struct{})
	}
	openSpans.set[s] = struct{}{}
	for o := range openSpans.set {
		o.sessions = max(o.sessions, len(openSpans.set))
	}
	openSpans.Unlock()
	unix.Getrusage(unix.RUSAGE_SELF, &s.r0)
	return s
}

// end returns the process's user and system time since begin, and the
// most spans that ran at once meanwhile.
func (s *cpuSpan) end() (user, system time.Duration, sessions int) {
	var r1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &r1)
	openSpans.Lock()
	delete(openSpans.set, s)
	sessions = s.sessions
	openSpans.Unlock()
	return time.Duration(r1.Utime.Nano() - s.r0.Utime.Nano()), time.Duration(r1.Stime.Nano() - s.r0.Stime.Nano()), sessions
}
