package wire

import (
	"fmt"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// QUICParams describe a QUIC test.
type QUICParams struct {
	Streams int `msgpack:"streams"`
	// Direction: with DirBidir, an upload and a download stream per
	// index, at once (a perf stream carries its upload before its
	// response).
	Direction Direction     `msgpack:"direction"`
	Duration  time.Duration `msgpack:"duration"` // of the data phase; ignored with Bytes
	Bytes     int64         `msgpack:"bytes"`    // per direction, split over the streams; 0: Duration
	WriteSize int           `msgpack:"write_size"`
	Interval  time.Duration `msgpack:"interval"` // sampling
	// Pings datagrams are echoed before the data phase, one every
	// PingEvery, which goes on during it; PingEvery 0: no datagrams.
	Pings     int           `msgpack:"pings"`
	PingEvery time.Duration `msgpack:"ping_every"`
	Exclusive bool          `msgpack:"exclusive,omitempty"`
}

// Uploads and Downloads say which ways data flows.
func (p QUICParams) Uploads() bool { return p.Direction != DirReverse }

func (p QUICParams) Downloads() bool { return p.Direction != DirForward }

// Total is what the test asks of the agent's byte limit: Bytes each way.
func (p QUICParams) Total() int64 {
	if p.Direction == DirBidir {
		return 2 * p.Bytes
	}
	return p.Bytes
}

// Check validates p; the error is one line for the user.
func (p QUICParams) Check() error {
	if err := checkBulk("QUIC", p.Streams, p.Direction, p.Bytes, p.Duration, p.WriteSize, p.Interval); err != nil {
		return err
	}
	switch {
	case p.Pings < 0 || p.Pings > 100_000:
		return fmt.Errorf("%d pings: want 0..100000", p.Pings)
	case p.PingEvery < 0 || (p.PingEvery > 0 && p.PingEvery < time.Millisecond):
		return fmt.Errorf("ping interval %v: want 0 (none) or at least 1ms", p.PingEvery)
	}
	return nil
}

// QUICStart tells the agent that the client's connection is up and its
// streams are about to open; the agent answers, and the data phase starts.
type QUICStart struct{}

// QUICReport carries (part of) the agent's side at the end of a test.
type QUICReport struct {
	Side QUICSide `msgpack:"side"`
	Last bool     `msgpack:"last"`
}

// QUICSide is one side's account of a QUIC test.
type QUICSide struct {
	Streams []dump.QUICStream     `msgpack:"streams"`
	Conn    []dump.QUICConnSample `msgpack:"conn"`
	// UserCPU and SysCPU are the whole process's, as TCPSide's.
	UserCPU     time.Duration `msgpack:"user_cpu"`
	SysCPU      time.Duration `msgpack:"sys_cpu"`
	CPUSessions int           `msgpack:"cpu_sessions"`
	Elapsed     time.Duration `msgpack:"elapsed"`
	GSO         bool          `msgpack:"gso"` // quic-go sends with UDP GSO
	Buffers     UDPBuffers    `msgpack:"buffers"`
	Warnings    []string      `msgpack:"warnings,omitempty"`
}

// UDPBuffers are a QUIC socket's buffer sizes as the kernel reports them
// (twice what was set, for its bookkeeping).
type UDPBuffers struct {
	Rcv int `msgpack:"rcv" json:"rcv"`
	Snd int `msgpack:"snd" json:"snd"`
}
