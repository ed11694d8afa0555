package probe

import (
	"sync"
)

// Run sessions: the scenario runner asks an agent to start a command, the
// agent watches it as the runner watches its own (Process), stops it when
// asked, and returns its exit code, the tail of its output and its resource
// series. An agent runs commands only when started with AllowRun and a key.
//
// Client                       Agent
// Open{run}             ->
//                       <-     Opened{PID}            (the command runs)
//                       <-     RunExited{ExitCode}    (it ended, by itself or stopped)
// Finish                ->                            (always, once: stop it if it still runs)
//                       <-     RunReport ... RunReport{Last}

// Run session bounds.
const (
	// MaxRunOutput is how much of each of stdout and stderr an agent keeps:
	// the last bytes, the rest is counted as dropped.
	MaxRunOutput = 1 << 20
	// runChunk bounds the output or samples in one RunReport, well under
	// wire.MaxFrame.
	runChunk = 256 << 10
)

// tailBuffer keeps the last max bytes written to it, in a ring, and counts
// the others.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte // grows to max, then is overwritten from w on
	w       int
	dropped int64
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		t.dropped += int64(len(p) - t.max)
		p = p[len(p)-t.max:]
	}
	if k := min(len(p), t.max-len(t.buf)); k > 0 {
		t.buf = append(t.buf, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(t.buf[t.w:], p)
		t.dropped += int64(k)
		t.w = (t.w + k) % t.max
		p = p[k:]
	}
	return n, nil
}

// Bytes returns the kept tail, oldest byte first, and the count of bytes
// dropped before it.
func (t *tailBuffer) Bytes() ([]byte, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[t.w:]...)
	return append(out, t.buf[:t.w]...), t.dropped
}
