package probe

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/probe-dev/probe/collector/dump"
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
	// DefaultRunGrace is how long a command has from SIGINT to SIGKILL.
	DefaultRunGrace = 2 * time.Second
	maxRunGrace     = time.Minute
	maxRunArgs      = 4096
	// runChunk bounds the output or samples in one RunReport, well under
	// MaxFrame.
	runChunk = 256 << 10
)

// RunParams describe a command for an agent to run.
type RunParams struct {
	Path     string        `msgpack:"path"`     // absolute, or a name in the agent's PATH
	Args     []string      `msgpack:"args"`     // after the program name; SERVER_IP already replaced
	Name     string        `msgpack:"name"`     // names the series
	Interval time.Duration `msgpack:"interval"` // sampling; 0: 100 ms
	Grace    time.Duration `msgpack:"grace"`    // from SIGINT to SIGKILL when stopped; 0: DefaultRunGrace
}

// Check validates p; the error is one line for the user.
func (p RunParams) Check() error {
	switch {
	case p.Path == "":
		return errors.New("run: no program")
	case len(p.Args) > maxRunArgs:
		return fmt.Errorf("run: %d arguments, limit %d", len(p.Args), maxRunArgs)
	case p.Interval != 0 && p.Interval < 10*time.Millisecond:
		return fmt.Errorf("run: sampling interval %v: want at least 10ms", p.Interval)
	case p.Grace < 0 || p.Grace > maxRunGrace:
		return fmt.Errorf("run: grace %v: want 0 to %v", p.Grace, maxRunGrace)
	}
	return nil
}

func (p RunParams) grace() time.Duration {
	if p.Grace == 0 {
		return DefaultRunGrace
	}
	return p.Grace
}

// RunExited says that the command has ended (agent -> client).
type RunExited struct {
	ExitCode int `msgpack:"exit_code"` // 128+signal when a signal ended it, as shells say
}

// RunReport carries part of a run's results (agent -> client) after Finish:
// output and samples in order, and on the last one the totals.
type RunReport struct {
	Stdout  []byte                `msgpack:"stdout,omitempty"`
	Stderr  []byte                `msgpack:"stderr,omitempty"`
	Samples []dump.ResourceSample `msgpack:"samples,omitempty"`

	Last          bool  `msgpack:"last,omitempty"`
	ExitCode      int   `msgpack:"exit_code,omitempty"`
	StdoutDropped int64 `msgpack:"stdout_dropped,omitempty"` // bytes before the kept tail
	StderrDropped int64 `msgpack:"stderr_dropped,omitempty"`
}

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
