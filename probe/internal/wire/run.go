package wire

import (
	"errors"
	"fmt"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// Bounds of RunParams.
const (
	// DefaultRunGrace is how long a command has from SIGINT to SIGKILL.
	DefaultRunGrace = 2 * time.Second
	maxRunGrace     = time.Minute
	maxRunArgs      = 4096
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

// GraceOrDefault is Grace, or DefaultRunGrace when it is 0.
func (p RunParams) GraceOrDefault() time.Duration {
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
