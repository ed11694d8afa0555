package wire

import (
	"fmt"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// MaxStreams bounds a TCP or QUIC test's parallel streams.
const MaxStreams = 1024

// TCPParams describe a TCP test.
type TCPParams struct {
	Streams   int           `msgpack:"streams"`
	Direction Direction     `msgpack:"direction"`
	Duration  time.Duration `msgpack:"duration"` // of the data phase; ignored with Bytes
	Bytes     int64         `msgpack:"bytes"`    // per direction, split over the streams; 0: Duration
	WriteSize int           `msgpack:"write_size"`
	Interval  time.Duration `msgpack:"interval"`           // TCP_INFO sampling
	SockOpts  []string      `msgpack:"sockopts,omitempty"` // NAME=VALUE, set on both sides
	GetOpts   []string      `msgpack:"getopts,omitempty"`  // read back on both sides
	Exclusive bool          `msgpack:"exclusive,omitempty"`
}

// Sends and Receives say which way data flows for one side.
func (p TCPParams) Sends(client bool) bool {
	return p.Direction == DirBidir || (p.Direction == DirForward) == client
}

func (p TCPParams) Receives(client bool) bool {
	return p.Direction == DirBidir || (p.Direction == DirForward) != client
}

// Check validates p; the error is one line for the user.
func (p TCPParams) Check() error {
	if err := checkBulk("TCP", p.Streams, p.Direction, p.Bytes, p.Duration, p.WriteSize, p.Interval); err != nil {
		return err
	}
	for _, s := range p.SockOpts {
		if _, err := collector.ParseSockOpt(s); err != nil {
			return err
		}
	}
	for _, s := range p.GetOpts {
		if _, err := collector.LookupSockOpt(s); err != nil {
			return err
		}
	}
	return nil
}

// TCPStart tells the agent that every stream is connected; it answers once
// it has them all, and both sides start.
type TCPStart struct{}

// TCPSide is one side's account of a TCP test.
type TCPSide struct {
	Streams []dump.TCPStream `msgpack:"streams"`
	// UserCPU and SysCPU are the whole process's over the test: this
	// session's alone only when CPUSessions is 1, else shared with the
	// other sessions that ran meanwhile.
	UserCPU     time.Duration     `msgpack:"user_cpu"`
	SysCPU      time.Duration     `msgpack:"sys_cpu"`
	CPUSessions int               `msgpack:"cpu_sessions"`        // the most tests this process ran at once over this one
	ReadBack    map[string]string `msgpack:"read_back,omitempty"` // GetOpts, from the first stream
	Elapsed     time.Duration     `msgpack:"elapsed"`
}

// TCPReport carries (part of) the agent's side at the end of a test.
type TCPReport struct {
	Side TCPSide `msgpack:"side"`
	Last bool    `msgpack:"last"`
}

// checkBulk validates what TCP and QUIC bulk tests share.
func checkBulk(kind string, streams int, dir Direction, bytes int64, duration time.Duration, writeSize int, interval time.Duration) error {
	switch {
	case streams < 1 || streams > MaxStreams:
		return fmt.Errorf("%d streams: want 1..%d", streams, MaxStreams)
	case dir != DirForward && dir != DirReverse && dir != DirBidir:
		return fmt.Errorf("direction %q: want forward, reverse or bidir", dir)
	case bytes < 0 || (bytes == 0 && duration <= 0):
		return fmt.Errorf("a %s test needs a duration or a byte count", kind)
	case writeSize < 1 || writeSize > 16<<20:
		return fmt.Errorf("write size %d: want 1..%d bytes", writeSize, 16<<20)
	case interval < 10*time.Millisecond:
		return fmt.Errorf("sampling interval %v: want at least 10ms", interval)
	}
	return nil
}
